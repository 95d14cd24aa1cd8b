"""The one harness every command-line test goes through: the real ``vbench`` entry point, run in this
process (fast: torch is imported once) or as its own process (for signals and concurrency)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from vbench.cli import main

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The one line a bad input prints (asserted to be exactly one)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        return lines[0]


@contextlib.contextmanager
def _environment(env: dict | None, cwd: Path | None):
    saved = {key: os.environ.get(key) for key in (env or {})}
    previous = Path.cwd()
    os.environ.update({key: str(value) for key, value in (env or {}).items()})
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(previous)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cli(*args, env: dict | None = None, cwd: Path | None = None) -> Result:
    """``vbench *args`` in this process: exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _environment({"COLUMNS": "200", **(env or {})}, cwd), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def start_cli(*args, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """``vbench *args`` as its own process (stdout and stderr merged), with this process's thread count so
    that results can be compared bit for bit."""
    environment = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": str(torch.get_num_threads()),
                   "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "vbench", *map(str, args)], cwd=cwd or REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """Tests send Ctrl-C: a suite started in the background (``pytest &``, SIGINT ignored and inherited)
    would otherwise start vbench deaf to it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def process_result(*args, env: dict | None = None, cwd: Path | None = None, timeout: float = 300) -> Result:
    """``vbench *args`` as its own process, waited for; stdout and stderr kept apart."""
    environment = {**os.environ, "COLUMNS": "200",
                   "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    done = subprocess.run([sys.executable, "-m", "vbench", *map(str, args)], cwd=cwd or REPO, capture_output=True,
                          text=True, env=environment, timeout=timeout)
    return Result(done.returncode, done.stdout, done.stderr)
