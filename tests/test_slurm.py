"""`vbench run --launcher slurm` against a real one-node SLURM cluster writing into a real PostgreSQL server: a
2 x 2 sweep, resubmission, a job killed mid-run and a preempted one (both resume), and bad input that submits
and writes nothing."""

from __future__ import annotations

import csv
import io
import re
import signal
from pathlib import Path

import pytest
import readme
from cli import run_cli, start_cli
from plugins import FAST, write_plugin
from services import free_port, wait_for

from vbench.data.fixtures import write_fixture
from vbench.errors import VbenchError
from vbench.slurm.sweep import SlurmSettings, parse_option, parse_time
from vbench.store import open_store

# Each job trains one thread on one of the cluster's CPUs; a throttle of 2 and a setup line, as a user would give.
SLURM_FLAGS = ["--launcher", "slurm", "--slurm-partition", "debug", "--slurm-time", "10", "--max-parallel", "2",
               "--slurm-setup", "export VBENCH_SETUP_RAN=1", "--slurm-option", "comment=vbench-tests"]
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture
def sweep(tmp_path):
    """The command line of a tiny sweep: fixture CIFAR-10 (4 steps an epoch), the plugin's tiny backbones."""
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=16, num_test=40)
    return ["run", "--suite", "cifar10", "--plugin", write_plugin(tmp_path), "--data-root", fixture.root,
            "--batch-size", "20", *FAST]


def job_ids(cluster) -> set[str]:
    return set(cluster.command("squeue", "-h", "-o", "%i").stdout.split())


def readme_sweep(database: str, data_root: str) -> list[str]:
    """The README's sweep ("## Scaling out") with this cluster's stand-ins for the user's site: the data
    root, the database, the partition, the setup line and the extra sbatch option."""
    command = readme.commands("## Scaling out")[0]
    stand_ins = {"--data-root": data_root, "--db": database, "--slurm-partition": "debug",
                 "--slurm-setup": "export VBENCH_SETUP_RAN=1", "--slurm-option": "comment=vbench-tests"}
    for option, value in stand_ins.items():
        index = command.index(option)
        command = [*command[:index + 1], str(value), *command[index + 2:]]
    return command


def test_the_readme_sweep_into_postgres(slurm_cluster, fresh_database, tmp_path):
    """vit-lite and lkca-t, seeds 0-2: six tasks of one job array, two at a time on this cluster's two CPUs."""
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    command = [*readme_sweep(fresh_database, fixture.root), "--epochs", "1", "--limit", "20", "--batch-size", "10",
               *FAST]
    result = run_cli(*command, env=ENV, cwd=tmp_path)
    assert result.code == 0, result.out + result.err
    assert re.search(r"submitted 6 of 6 runs as SLURM job \d+", result.out)
    assert "pending 0  running 0  done 6  failed 0" in result.out  # the progress, as a log gets it

    runs = open_store(fresh_database, write=False).list_runs()
    assert sorted((run.backbone, run.seed, run.status) for run in runs) == [
        (name, seed, "done") for name in ("lkca-t", "vit-lite") for seed in (0, 1, 2)]
    assert len({run.launch["array_job_id"] for run in runs}) == 1  # one job array
    assert sorted(run.launch["array_task"] for run in runs) == list(range(6))
    for run in runs:
        log = Path(run.launch["log"]).read_text()
        assert f"{run.backbone} seed {run.seed}: done (run {run.id})" in log
    listed, reported = [[fresh_database if word.startswith("postgresql://") else word for word in command]
                        for command in readme.commands("## Scaling out")[1:]]
    report = run_cli(*reported, "--format", "csv", env=ENV)
    rows = {row["backbone"]: row for row in csv.DictReader(io.StringIO(report.out))}
    assert {name: (row["n"], sorted(row["run_ids"].split())) for name, row in rows.items()} == {
        name: ("3", sorted(str(run.id) for run in runs if run.backbone == name)) for name in ("lkca-t", "vit-lite")}

    listing = run_cli(*listed)
    cells = re.sub(r"[\s│]", "", listing.out)  # a long log path is folded over lines of its cell
    assert all(f"slurm{run.launch['job_id']}" in cells and run.launch["log"] in cells for run in runs)

    before = job_ids(slurm_cluster)
    again = run_cli(*command, env=ENV, cwd=tmp_path)  # idempotent: nothing is done twice
    assert again.code == 0 and "nothing to submit: all 6 runs are accounted for (6 already done)" in again.out
    assert job_ids(slurm_cluster) <= before and len(open_store(fresh_database, write=False).list_runs()) == 6


def submit_hanging_run(cluster, database: str, command: list, tmp_path: Path, ctrl_c: bool) -> tuple[object, dict]:
    """Submit one 3-epoch run that hangs in its second epoch and wait until it hangs there: with --no-wait, or
    waiting, then Ctrl-C, which stops the waiting but not the job."""
    flag = tmp_path / "hang"
    env = {**ENV, "VBENCH_TEST_HANG_AFTER": "5", "VBENCH_TEST_HANG_FLAG": str(flag)}
    if ctrl_c:
        process = start_cli(*command, *SLURM_FLAGS, env=env, cwd=tmp_path)
        wait_for(flag.exists, 120, "the job to reach its second epoch")
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 130 and "stopped waiting; the jobs keep running" in out, out
    else:
        result = run_cli(*command, *SLURM_FLAGS, "--no-wait", env=env, cwd=tmp_path)
        assert result.code == 0 and "the jobs keep running" in result.out, result.out + result.err
        wait_for(flag.exists, 120, "the job to reach its second epoch")
    [run] = open_store(database, write=False).list_runs()
    assert run.status == "running" and run.launch["job_id"] in job_ids(cluster)
    return run, env


def test_job_killed_mid_run_resumes_when_the_sweep_is_submitted_again(slurm_cluster, fresh_database, sweep, tmp_path):
    command = [*sweep, "--backbones", "tiny-test", "--seeds", "3", "--epochs", "3", "--db", fresh_database]
    queued, env = submit_hanging_run(slurm_cluster, fresh_database, command, tmp_path, ctrl_c=True)
    job_id = queued.launch["job_id"]
    slurm_cluster.command("scancel", "--signal=KILL", "--full", job_id)  # killed, not given the time to stop
    slurm_cluster.wait_jobs([job_id])
    [killed] = open_store(fresh_database, write=False).list_runs()
    assert (killed.id, killed.status, killed.steps_done) == (queued.id, "running", 1)

    result = run_cli(*command, *SLURM_FLAGS, env=env, cwd=tmp_path)
    assert result.code == 0, result.out + result.err
    store = open_store(fresh_database, write=False)
    [run] = store.list_runs()
    assert (run.id, run.status, [s.step for s in store.steps(run.id)]) == (queued.id, "done", [1, 2, 3])
    assert run.launch["job_id"] != job_id
    assert f"resuming run {run.id} from its checkpoint after epoch 1" in Path(run.launch["log"]).read_text()


def test_preempted_job_is_requeued_by_submitit_and_resumes(slurm_cluster, fresh_database, sweep, tmp_path):
    command = [*sweep, "--backbones", "tiny-test", "--seeds", "4", "--epochs", "3", "--db", fresh_database]
    queued, _ = submit_hanging_run(slurm_cluster, fresh_database, command, tmp_path, ctrl_c=False)
    job_id = queued.launch["job_id"]
    slurm_cluster.command("scancel", "--signal=USR2", job_id)  # SLURM's warning before preemption or the time limit
    wait_for(lambda: slurm_cluster.job_state(job_id) == "PENDING", 60, "submitit to requeue the job")
    # SLURM starts the requeued job itself, once the first run's credential has expired (the cluster's
    # cred_expire, 10 s): forcing an earlier start races slurmd, which may refuse the launch and hold the job.
    final = slurm_cluster.wait_jobs([job_id])
    store = open_store(fresh_database, write=False)
    [run] = store.list_runs()
    log = Path(run.launch["log"]).read_text()
    assert (run.id, run.status, [s.step for s in store.steps(run.id)]) == (queued.id, "done", [1, 2, 3]), (final, log)
    assert "Requeued job" in log and f"resuming run {run.id} from its checkpoint after epoch 1" in log


# --- bad input: one line, exit code 2, nothing submitted or written --------------------------------------
def test_without_sbatch_nothing_is_submitted(sweep, tmp_path):
    db = tmp_path / "runs.db"
    empty = tmp_path / "no-slurm-here"
    empty.mkdir()
    result = run_cli(*sweep, "--backbones", "tiny-test", "--db", db, "--launcher", "slurm", "--allow-sqlite",
                     env={"PATH": str(empty)}, cwd=tmp_path)
    assert result.code == 2
    assert "--launcher slurm needs SLURM's sbatch" in result.error_line
    assert not db.exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("case", ["unreachable-postgres", "unknown-slurm-option", "malformed-slurm-option",
                                  "sqlite-without-allow", "time"])
def test_bad_sweep_input_is_one_line_and_submits_nothing(case, slurm_cluster, fresh_database, sweep, tmp_path):
    flags = {
        "unreachable-postgres": (["--db", f"postgresql://postgres@127.0.0.1:{free_port()}/vbench"], "cannot open the run store"),
        "unknown-slurm-option": (["--slurm-option", "no-such-option=1"], "SLURM refuses the job"),
        "malformed-slurm-option": (["--slurm-option", "=1"], "is not key=value"),
        "sqlite-without-allow": (["--db", tmp_path / "runs.db"], "SQLite on a network file system can lose writes"),
        "time": (["--slurm-time", "soon"], "is not a SLURM time limit"),
    }
    extra, message = flags[case]
    before = job_ids(slurm_cluster)
    result = run_cli(*sweep, "--backbones", "tiny-test", "--db", fresh_database, *SLURM_FLAGS, *extra, env=ENV,
                     cwd=tmp_path)
    assert result.code == 2 and message in result.error_line, result.out + result.err
    assert job_ids(slurm_cluster) <= before
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs.db").exists()
    import psycopg2

    with psycopg2.connect(fresh_database) as connection, connection.cursor() as cursor:  # not even the schema
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cursor.fetchone()[0] == 0


def test_slurm_options_are_read_as_slurm_reads_them():
    assert [parse_time(text) for text in ("90", "5:30", "1:30:00", "2-0", "1-02:03", "0:00:01")] == [90, 6, 90, 2880, 1563, 1]
    assert parse_option("account=proj") == ("account", "proj") and parse_option("--exclusive") == ("exclusive", True)
    for bad in ("partition=gpu", "time=10", "a b=1", "x="):
        with pytest.raises(VbenchError):
            parse_option(bad)
    local = run_cli("run", "--suite", "smoke", "--backbones", "vit-0.5m", "--slurm-partition", "gpu")
    assert local.code == 2 and "need --launcher slurm" in local.error_line


class TwoProcessesPerJob(SlurmSettings):
    """What --slurm-gpus-per-job 2 starts, one process per GPU, on CPUs: the test cluster has no GPU."""

    @property
    def tasks_per_job(self) -> int:
        return 2


def test_a_job_of_two_processes_is_one_distributed_run(slurm_cluster, fresh_database, tmp_path, monkeypatch):
    from vbench import api
    from vbench.engine.runner import RunOptions
    from vbench.slurm import sweep as slurm

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("VBENCH_TEST_BATCH_LOG", str(tmp_path / "batches"))
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=16, num_test=40)
    plugin = write_plugin(tmp_path)
    api.load_plugins([plugin])
    sweep = slurm.plan_sweep("cifar10", "tiny-bn", "0", db=fresh_database, overrides={"epochs": 1, "batch_size": 20},
                             sets=FAST[1::2], options=RunOptions(data_root=fixture.root), plugins=[plugin],
                             settings=TwoProcessesPerJob(time="10"))
    slurm.submit_sweep(sweep)
    result = slurm.wait(sweep)
    assert [outcome.status for outcome in result.outcomes] == ["done"], result.outcomes
    [run] = open_store(fresh_database, write=False).list_runs()  # one run, written by rank 0
    assert (run.status, run.settings["world_size"], run.launch["processes"]) == ("done", 2, 2)
    shares = [path.read_text().split() for path in sorted(tmp_path.glob("batches.*"))]
    assert shares == [["10"] * 4] * 2


def test_queued_rows_are_claimed_by_their_job_and_never_hide_finished_or_live_runs(tmp_path):
    import os
    import socket

    from vbench.store import RunKey

    store = open_store(str(tmp_path / "runs.db"))
    fields = dict(suite="s", backbone="b", seed=0, recipe_hash="h", data_id="d")
    key = RunKey("s", "b", 0, "h", "d")
    launch = {"launcher": "slurm", "job_id": "7_0", "log": "/logs/7_0_0_log.out"}
    queued = store.queue_run(key, fields, launch)
    assert [(r.id, r.status, r.launch, r.started_at) for r in store.list_runs()] == [(queued, "queued", launch, None)]
    assert store.queue_run(key, fields, launch) == queued and len(store.list_runs()) == 1  # submitted again

    me = f"{socket.gethostname()}:{os.getpid()}:job"
    state, run = store.claim_run(key, {**fields, "launch": {**launch, "host": "node1"}}, me)
    assert (state, run.id, run.status, run.launch["host"]) == ("resume", queued, "running", "node1")
    assert run.started_at is not None  # the job began it
    assert store.queue_run(key, fields, {**launch, "job_id": "8_0"}) == queued  # a live holder keeps it
    assert store.get_run(queued).status == "running" and store.get_run(queued).launch["job_id"] == "7_0"

    store.finish_run(queued, "failed", error="boom")
    assert store.queue_run(key, fields, {**launch, "job_id": "9_0"}) == queued  # a failed run is queued again
    again = store.get_run(queued)
    assert (again.status, again.error, again.launch["job_id"]) == ("queued", None, "9_0")
    store.finish_run(queued, "done")
    assert store.queue_run(key, fields, {**launch, "job_id": "10_0"}) == queued
    assert store.get_run(queued).status == "done" and store.get_run(queued).launch["job_id"] == "9_0"
