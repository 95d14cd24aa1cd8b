"""What SLURM costs a sweep: the same 2 backbones x 2 seeds sweep of tiny runs (the tests' fixture CIFAR-10 and
tiny backbones, 1 epoch), run locally and through `--launcher slurm`, interleaved; each command a fresh process
writing into a fresh PostgreSQL database. The runs are tiny, so the difference is the overhead: submission
(checks, sbatch), queueing, the jobs' start-up (a Python with torch each) and the bookkeeping (progress polls).

    vbench bench sweep [--rounds 3] [--epochs 1]

Uses the SLURM cluster of $SLURM_CONF and the PostgreSQL server of $VBENCH_TEST_POSTGRES_URL when they are set
(`.ci/services.sh start` prints them), else starts throwaway ones as the tests do (root, Debian's packages).
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import services  # noqa: E402  (tests/services.py: the throwaway servers)
from _timing import argument_parser  # noqa: E402
from plugins import FAST, write_plugin  # noqa: E402


@contextlib.contextmanager
def cluster_and_server():
    """(SLURM cluster, PostgreSQL server URL): the announced ones, else throwaway ones stopped at the end."""
    started = []
    cluster = services.SlurmCluster.from_environment()
    if cluster is None:
        cluster = services.SlurmCluster.create(prefix="vbench-bench-slurm-")
        started.append(cluster.remove)
        os.environ["SLURM_CONF"] = str(cluster.conf)
    server = services.PostgresServer.from_environment()
    if server is None:
        server = services.PostgresServer.create(prefix="vbench-bench-postgres-")
        started.append(server.remove)
    try:
        yield cluster, server.url
    finally:
        for stop in reversed(started):
            stop()


def timed_command(args: list[str], cwd: Path) -> tuple[float, dict[str, float], str]:
    """Run ``vbench *args``; wall seconds, and when (seconds after the start) marker lines appeared."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.time()
    marks: dict[str, float] = {"start": start}
    lines = []
    with subprocess.Popen([sys.executable, "-m", "vbench", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("submitted ") and "submitted" not in marks:
                marks["submitted"] = time.time()
        code = process.wait()
    marks["end"] = time.time()
    if code != 0:
        raise RuntimeError(f"vbench {' '.join(args)} exited {code}:\n{''.join(lines)[-3000:]}")
    return marks["end"] - start, marks, "".join(lines)


def epoch_seconds(value: datetime) -> float:
    return value.replace(tzinfo=timezone.utc).timestamp()


def job_started(log: str) -> float | None:
    """When submitit started the job's Python (its first log line)."""
    match = re.search(r"submitit INFO \((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\) - Starting with", Path(log).read_text())
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # the job's local time


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    from vbench.data.fixtures import write_fixture
    from vbench.store import open_store

    work = Path(tempfile.mkdtemp(prefix="vbench-bench-sweep-"))
    fixture = write_fixture("cifar10", work / "data", per_batch=16, num_test=40)
    sweep = ["run", "--suite", "cifar10", "--backbones", "tiny-test,tiny-bn", "--seeds", "0,1", "--epochs",
             str(args.epochs), "--plugin", write_plugin(work), "--data-root", fixture.root, "--batch-size", "20", *FAST]
    samples: dict[str, list] = {"local": [], "slurm": []}
    with cluster_and_server() as (cluster, server_url):
        cores = cluster.command("sinfo", "-h", "-o", "%c").stdout.strip()
        for _ in range(args.rounds):
            for launcher in ("local", "slurm"):
                url = services.create_database(server_url, prefix="vbench_bench")
                try:
                    flags = ["--launcher", "slurm", "--slurm-time", "30"] if launcher == "slurm" else []
                    wall, marks, _ = timed_command([*sweep, "--db", url, *flags], cwd=work)
                    runs = open_store(url, write=False).list_runs()
                    assert len(runs) == 4 and all(run.status == "done" for run in runs), runs
                    samples[launcher].append(measure(wall, marks, runs))
                finally:
                    services.drop_database(server_url, url)
    table = Table(title=f"A 2 x 2 sweep of tiny runs, local vs SLURM ({cores} CPUs, 1 thread a run)",
                  caption=f"median of {args.rounds} interleaved rounds, seconds; each command a fresh process")
    for column in ("", "local", "slurm", "slurm - local"):
        table.add_column(column, justify="left" if not column else "right")
    rows = [("command wall time", "wall"), ("  to submission (checks, plan, sbatch)", "submit"),
            ("  submission to first job's Python", "queue"), ("  job's Python to its run's claim (start-up)", "startup"),
            ("  training + evaluation, summed over runs", "train"), ("  last run done to command's end", "tail")]
    for label, key in rows:
        local = [sample.get(key) for sample in samples["local"]]
        slurm = [sample.get(key) for sample in samples["slurm"]]
        cells = [median(local), median(slurm)]
        difference = f"{float(cells[1]) - float(cells[0]):+.1f}" if "-" not in cells else "-"
        table.add_row(label, *cells, difference)
    Console().print(table)


def measure(wall: float, marks: dict, runs: list) -> dict:
    ends = [epoch_seconds(run.ended_at) for run in runs]
    sample = {"wall": wall, "train": sum(run.wall_time_s for run in runs), "tail": marks["end"] - max(ends)}
    if "submitted" in marks:
        sample["submit"] = marks["submitted"] - marks["start"]
        starts = [job_started(run.launch["log"]) for run in runs]
        sample["queue"] = min(starts) - marks["submitted"]
        sample["startup"] = statistics.median(epoch_seconds(run.started_at) - start for run, start in zip(runs, starts))
    return sample


def median(values: list) -> str:
    present = [value for value in values if value is not None]
    return f"{statistics.median(present):.1f}" if present else "-"


if __name__ == "__main__":
    main()
