import sys

import pytest
import torch

from vbench import cli

from vbench import registry

# Real local services (PostgreSQL, SLURM, headless Chromium): see tests/services.py.
from services import chrome, fresh_database, postgres_server, postgres_url, restart_postgres, slurm_cluster  # noqa: F401


@pytest.fixture(autouse=True)
def _restore_registry():
    """Backbones a test registers (plugins) do not leak into the next test."""
    registry.load_all()
    before = dict(registry._SPECS)
    yield
    for name in list(registry._SPECS):
        if name not in before:
            registry.unregister_backbone(name)


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    """Batch-2 passes through small models gain nothing from intra-op threads, and on a busy 2-core
    machine their spin-waiting made the suite several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def vbench_cli(monkeypatch, capsys):
    """The CLI in this process, as a user runs it: ``vbench_cli(*args) -> (exit code, stdout, stderr)``."""
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["vbench", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
