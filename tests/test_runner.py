"""`vbench run` end to end on the CPU through the one Runner: tiny backbones (a --plugin file) on fixture data
of every on-disk format, seeds, skips, failures, resume after SIGKILL and Ctrl-C, and what bad input leaves."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from cli import process_result, run_cli, start_cli
from plugins import FAST, write_plugin

from vbench.data.fixtures import write_fixture, write_image_folder_suite
from vbench.models import registry
from vbench.store import open_store


@pytest.fixture
def plugin(tmp_path) -> str:
    # a new path per test: the registry imports a plugin path once per process
    return write_plugin(tmp_path)


def db_rows(db: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(db) as connection:
        runs = connection.execute("SELECT id, suite, backbone, seed, status, steps_done, error FROM runs ORDER BY id").fetchall()
        steps = connection.execute("SELECT run_id, step FROM steps ORDER BY run_id, step").fetchall()
    return runs, steps


def checkpoint_files(db: Path) -> list[Path]:
    return sorted((db.parent / "checkpoints").glob("*/run-*.pt"))


# --- every on-disk format --------------------------------------------------------------------------
FORMATS = {
    # kind: (fixture options, suite, extra flags)
    "cifar10": ({"per_batch": 16, "num_test": 40}, "cifar10", ["--batch-size", "20"]),
    "cifar100": ({"num_train": 100, "num_test": 40}, "cifar100", ["--batch-size", "20"]),
    "svhn": ({"num_train": 80, "num_test": 40}, "svhn", ["--batch-size", "20"]),
    "tiny-imagenet": ({"train_per_class": 1, "val_per_class": 1}, "tiny-imagenet", ["--batch-size", "50"]),
    "image-folder": ({"train_per_class": 10, "test_per_class": 4}, None, ["--batch-size", "10"]),
}


@pytest.mark.parametrize("kind", FORMATS)
def test_run_leaves_a_done_row_with_metrics_and_steps(kind, plugin, tmp_path):
    options, suite, flags = FORMATS[kind]
    fixture = write_fixture(kind, tmp_path / "data", **options)
    if suite is None:
        suite = str(write_image_folder_suite(tmp_path / "folder.toml", fixture.root, num_classes=3))
    db = tmp_path / "runs.db"
    result = run_cli("run", "--suite", suite, "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "2",
                     "--data-root", fixture.root, "--db", db, *flags, *FAST)
    assert result.code == 0, result.out + result.err
    store = open_store(str(db), write=False)
    [run] = store.list_runs()
    assert (run.status, run.backbone, run.seed, run.steps, run.steps_done, run.step_unit, run.error) == \
        ("done", "tiny-test", 0, 2, 2, "epoch", None)
    assert run.dataset == kind and run.task == "classification"
    assert 0.0 <= run.metrics["top1"] <= run.metrics["top5"] <= 100.0 and set(run.metrics) == {"top1", "top5"}
    assert run.params == 8 * 27 + 8 + 8 * 72 + 8 + 8 * run.num_classes + run.num_classes
    assert run.flops > 0 and run.train_images_per_s > 0 and run.wall_time_s > 0
    assert run.peak_memory_bytes > 2**20 and run.peak_memory_kind == "cpu_peak_rss_of_run"
    assert run.recipe["epochs"] == 2 and run.recipe["warmup_epochs"] == 0 and run.recipe["repeats"] == 1
    assert run.settings["device"] == "cpu" and run.settings["precision"] == "fp32" and run.settings["compiled"] is False
    assert run.data_id and run.data["sizes"] == {"train": len(fixture.train_labels), "test": len(fixture.test_labels)}
    assert run.torch_version == torch.__version__ and run.device_name.startswith("cpu") and run.host
    steps = store.steps(run.id)
    assert [s.step for s in steps] == [1, 2]
    assert steps[-1].metrics["top1"] == run.metrics["top1"]
    assert all(s.metrics["train_loss"] > 0 and s.metrics["lr"] > 0 and s.metrics["images_per_s"] > 0 for s in steps)
    assert "vbench run:" in result.out and "done" in result.out  # the summary table
    assert "2 epochs (0 warm-up epochs)" in result.out.splitlines()[0]
    assert "next: vbench report" in result.out
    # the final weights and the final evaluation's per-image predictions are kept beside the store
    from vbench.store.artifacts import load_weights, predictions_path, run_files, weights_path
    from vbench.store.predictions import load_predictions

    assert set(run_files(store, run.id)) == {"checkpoint", "weights", "predictions"}
    model = load_weights(weights_path(store, run.id), registry.create_backbone("tiny-test", num_classes=run.num_classes))
    checkpoint = torch.load(store.artifact_dir("checkpoints") / f"run-{run.id}.pt", weights_only=False)
    assert all(torch.equal(value, checkpoint["model"][name]) for name, value in model.state_dict().items())
    predictions = load_predictions(predictions_path(store, run.id))
    assert predictions.images == len(fixture.test_labels) and predictions.meta["run_id"] == run.id
    assert 100.0 * predictions.correct.mean() == pytest.approx(run.metrics["top1"])
    deleted = run_cli("runs", "rm", str(run.id), "--db", db)
    assert deleted.code == 0 and run_files(store, run.id) == {}


def test_seeds_skip_force_nan_crash_and_unbuildable(plugin, tmp_path):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    db = tmp_path / "runs.db"
    common = ["--suite", "cifar10", "--plugin", plugin, "--epochs", "1", "--data-root", fixture.root, "--db", db,
              "--batch-size", "10", *FAST]
    result = run_cli("run", "--backbones", "tiny-nan,tiny-boom,tiny-none,tiny-test", "--seeds", "0,1", *common)
    assert result.code == 1, result.out + result.err  # some runs failed; the others went on
    runs, steps = db_rows(db)
    assert [(r[2], r[3], r[4]) for r in runs] == [
        ("tiny-nan", 0, "failed"), ("tiny-nan", 1, "failed"), ("tiny-boom", 0, "failed"), ("tiny-boom", 1, "failed"),
        ("tiny-test", 0, "done"), ("tiny-test", 1, "done")]
    assert runs[0][6] == "non-finite training loss (nan) in epoch 1, within its first 4 steps"
    assert runs[2][6] == "RuntimeError: boom from the test backbone"
    assert steps == [(5, 1), (6, 1)]
    # a builder that returns no model is named in one line, and nothing of it is stored
    assert "tiny-none seed 0: failed: backbone 'tiny-none': its builder tiny_none() returned NoneType" in result.out
    # the same command again: finished runs are skipped, failed ones retried (and fail again)
    result = run_cli("run", "--backbones", "tiny-test", "--seeds", "0,1", *common)
    assert result.code == 0 and result.out.count("already done") == 2
    assert db_rows(db)[0] == runs
    result = run_cli("run", "--backbones", "tiny-test", "--seeds", "1", "--force", *common)
    assert result.code == 0
    runs_after, steps_after = db_rows(db)
    assert runs_after[:6] == runs and runs_after[6][2:5] == ("tiny-test", 1, "done")
    assert steps_after == steps + [(7, 1)]
    # a different recipe is a different experiment
    result = run_cli("run", "--backbones", "tiny-test", "--seeds", "0", "--lr", "5e-4", *common)
    assert result.code == 0 and "already done" not in result.out and len(db_rows(db)[0]) == 8


def test_reference_pipeline_run(plugin, tmp_path):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    db = tmp_path / "runs.db"
    result = run_cli("run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "1",
                     "--pipeline", "reference", "--data-root", fixture.root, "--db", db, "--batch-size", "10", *FAST)
    assert result.code == 0, result.out + result.err
    [run] = open_store(str(db), write=False).list_runs()
    assert (run.status, run.steps_done, run.settings["pipeline"]) == ("done", 1, "reference")
    assert run.metrics["top1"] is not None and run.train_images_per_s > 0


# --- bad input: exit 2, one line, nothing written ----------------------------------------------------
@pytest.fixture(scope="module")
def filled_db(tmp_path_factory):
    """A store holding one finished run; the bad-input tests check that it stays exactly so."""
    tmp_path = tmp_path_factory.mktemp("filled")
    plugin = write_plugin(tmp_path)
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    db = tmp_path / "runs.db"
    result = run_cli("run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "1",
                     "--data-root", fixture.root, "--db", db, "--batch-size", "10", *FAST)
    assert result.code == 0, result.out + result.err
    return db, fixture.root


def snapshot(db: Path) -> tuple:
    """Everything a command could have changed: the SQL content and the files beside the database."""
    with sqlite3.connect(db) as connection:
        dump = list(connection.iterdump())
    connection.close()
    return dump, sorted(str(p.relative_to(db.parent)) for p in db.parent.rglob("*") if ".vbench-cache" not in str(p))


@pytest.mark.parametrize("args, message", [
    (["--backbones", "tiny-tset"], "unknown backbone 'tiny-tset'; closest: tiny-test"),
    (["--backbones", "tiny-test,nope-net"], "unknown backbone 'nope-net'"),
    (["--backbones", "tiny-none"], "no backbone can run on suite 'cifar10': tiny-none: backbone 'tiny-none': its builder"),
    (["--backbones", "vit-s"], "backbone 'vit-s' has no classification model; its tasks: segmentation"),
    (["--backbones", "nothing-*"], "no backbone matches 'nothing-*'"),
    (["--suite", "cifar11"], "unknown suite 'cifar11'"),
    (["--set", "lr=fast"], "--set: key 'recipe.lr' must be a number"),
    (["--set", "warmup=3"], "--set: unknown classification recipe key 'warmup'"),
    (["--set", "lr"], "--set 'lr' is not key=value"),
    (["--set", "warmup_epochs=5"], "--set: recipe.warmup_epochs (5) must be shorter than recipe.epochs (1)"),
    (["--epochs", "-1"], "--epochs: key 'recipe.epochs' must be at least 1"),
    (["--batch-size", "1000"], "suite 'cifar10' has 40 training images, fewer than one batch of 1000"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--seeds", "0,x"], "--seeds '0,x' is not a comma-separated list of integers"),
    (["--device", "cuda"], "--device cuda was asked for but torch sees no CUDA GPU"),
    (["--pipeline", "fast"], "unknown pipeline 'fast'"),
    (["--data-root", "/nonexistent/vbench-data"], "CIFAR-10 not found: /nonexistent/vbench-data"),
])
def test_bad_input_exits_2_and_leaves_the_store_unchanged(args, message, plugin, filled_db):
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    db, data_root = filled_db
    before = snapshot(db)
    base = {"--suite": "cifar10", "--backbones": "tiny-test", "--data-root": str(data_root), "--epochs": "1",
            "--batch-size": "10"}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [item for pair in base.items() for item in pair] + [a for a in args if a not in base and a not in base.values()]
    result = run_cli("run", *flat, "--plugin", plugin, "--db", db, "--force", *FAST)
    assert result.code == 2, result.out + result.err
    assert result.error_line.startswith(f"error: {message}"), result.err
    assert snapshot(db) == before


def test_nothing_is_created_for_bad_input_in_a_fresh_folder(plugin, filled_db, tmp_path):
    _, data_root = filled_db
    result = run_cli("run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin, "--data-root",
                     data_root, "--batch-size", "1000", *FAST, cwd=tmp_path)
    assert result.code == 2 and "fewer than one batch" in result.error_line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_backbones.py"]  # no results/vbench.db


def test_unwritable_database_path(plugin, filled_db, tmp_path):
    _, data_root = filled_db
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin,
                     "--data-root", data_root, "--db", blocker / "runs.db", *FAST)
    assert result.code == 2 and result.error_line.startswith("error: database path")
    assert blocker.read_text() == "x"


# --- killed, interrupted, resumed: the same weights and metrics as an uninterrupted run -------------
def wait_until(condition, process, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def final_state(db: Path) -> tuple[dict, list, tuple]:
    [checkpoint] = [p for p in checkpoint_files(db) if not p.name.endswith(".prev.pt")]
    state = torch.load(checkpoint, weights_only=False)
    store = open_store(str(db), write=False)
    [run] = store.list_runs()
    steps = [(s.step, {k: v for k, v in s.metrics.items() if k not in ("images_per_s", "time_s")})
             for s in store.steps(run.id)]
    return state, steps, (run.status, run.metrics, run.steps_done, run.params, run.flops)


def assert_same_training(one: Path, other: Path) -> None:
    one_state, one_steps, one_run = final_state(one)
    other_state, other_steps, other_run = final_state(other)
    assert one_run == other_run and one_run[0] == "done"
    assert one_steps == other_steps
    for name, tensor in one_state["model"].items():
        assert torch.equal(tensor, other_state["model"][name]), name


def resumable_command(plugin: str, data_root, db: Path) -> list:
    return ["run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "6",
            "--data-root", data_root, "--db", db, "--batch-size", "20", "--seed", "7", *FAST]


def test_sigkill_then_resume_equals_an_uninterrupted_run(plugin, tmp_path):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=60, num_test=40)
    whole_db, broken_db = tmp_path / "whole" / "runs.db", tmp_path / "broken" / "runs.db"
    killed = start_cli(*resumable_command(plugin, fixture.root, broken_db))
    wait_until(lambda: checkpoint_files(broken_db), killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    [(status, steps_done)] = [(r[4], r[5]) for r in db_rows(broken_db)[0]]
    assert status == "running" and steps_done < 6  # killed mid-run, before it was recorded as done

    # The same command again (in this process) resumes it at once: the dead holder's lease is void.
    result = run_cli(*resumable_command(plugin, fixture.root, broken_db))
    assert result.code == 0, result.out + result.err
    assert "resuming run 1 from its checkpoint after epoch" in result.out
    result = run_cli(*resumable_command(plugin, fixture.root, whole_db))
    assert result.code == 0 and "resuming" not in result.out, result.out + result.err
    assert len(db_rows(broken_db)[0]) == 1  # the resumed run kept its row
    assert_same_training(whole_db, broken_db)


def test_ctrl_c_marks_the_run_interrupted_and_exits_130(plugin, tmp_path):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    db = tmp_path / "runs.db"
    result = run_cli("run", "--suite", "cifar10", "--backbones", "tiny-test,tiny-boom", "--plugin", plugin,
                     "--epochs", "2", "--data-root", fixture.root, "--db", db, "--batch-size", "10", *FAST,
                     env={"VBENCH_TEST_INTERRUPT_AFTER": "5"})  # one epoch is four steps
    assert result.code == 130, result.out + result.err
    runs, steps = db_rows(db)
    # interrupted in its second epoch; the backbone after it never started
    assert runs == [(1, "cifar10", "tiny-test", 0, "interrupted", 1, "interrupted by the user (Ctrl-C)")]
    assert steps == [(1, 1)]


# --- two processes, one SQLite file ----------------------------------------------------------------
def _has_a_run(db: Path) -> bool:
    try:
        return db.exists() and bool(db_rows(db)[0])
    except sqlite3.OperationalError:  # the other process is creating the tables
        return False


def test_two_processes_share_one_sqlite_file(plugin, tmp_path):
    """A `vbench run` process and one in this process write the same SQLite file at the same time."""
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=20, num_test=20)
    db = tmp_path / "shared.db"
    common = ["--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "3",
              "--data-root", fixture.root, "--db", db, "--batch-size", "10", *FAST]
    other = start_cli("run", "--seeds", "0,1,2", *common)
    wait_until(lambda: _has_a_run(db), other)
    result = run_cli("run", "--seeds", "3,4,5", *common)
    assert result.code == 0, result.out + result.err
    output = other.communicate(timeout=300)[0]
    assert other.returncode == 0, output
    runs, steps = db_rows(db)
    assert sorted((r[3], r[4], r[5]) for r in runs) == [(seed, "done", 3) for seed in range(6)]
    assert sorted(steps) == sorted((r[0], e) for r in runs for e in (1, 2, 3))
    with sqlite3.connect(db) as connection:
        spans = connection.execute("SELECT seed, started_at, ended_at FROM runs").fetchall()
    ours = [(start, end) for seed, start, end in spans if seed >= 3]
    theirs = [(start, end) for seed, start, end in spans if seed < 3]
    assert min(s for s, _ in ours) < max(e for _, e in theirs)  # the two really overlapped


def test_the_same_command_twice_at_once_trains_each_run_once(plugin, tmp_path):
    """The second command finds the run leased by a live process and skips it instead of training it too."""
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=60, num_test=20)
    db = tmp_path / "runs.db"
    command = ["run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "6",
               "--data-root", fixture.root, "--db", db, "--batch-size", "20", *FAST]
    first = start_cli(*command)
    wait_until(lambda: _has_a_run(db), first)
    second = run_cli(*command)
    assert second.code == 0, second.out + second.err
    assert "is being trained by" in second.out and "skipped" in second.out
    assert first.wait(timeout=300) == 0
    runs, _ = db_rows(db)
    assert [(r[2], r[4]) for r in runs] == [("tiny-test", "done")]


def test_help_version_and_debug():
    assert run_cli("-h").code == 0 and "run" in run_cli("--help").out
    assert run_cli("--version").out.startswith("vbench ")
    result = process_result("info", "nope", "--debug")
    assert result.code != 0 and "Traceback" in result.err


# --- faults: checkpoints belong to one store and run; damaged files never stop the command ---------
def interrupt_after_two_epochs(plugin: str, data_root, db: Path) -> None:
    """Leaves run 1 interrupted with checkpoints after epochs 1 (previous) and 2 (current)."""
    result = run_cli(*resumable_command(plugin, data_root, db), env={"VBENCH_TEST_INTERRUPT_AFTER": "6"})
    assert result.code == 130, result.out + result.err  # three steps an epoch: interrupted in epoch 3


def test_a_truncated_checkpoint_is_skipped_and_the_run_continues_from_the_previous(plugin, tmp_path):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=12, num_test=20)
    broken_db, whole_db = tmp_path / "broken" / "runs.db", tmp_path / "whole" / "runs.db"
    interrupt_after_two_epochs(plugin, fixture.root, broken_db)
    current = [p for p in checkpoint_files(broken_db) if p.name == "run-1.pt"][0]
    current.write_bytes(current.read_bytes()[: current.stat().st_size // 2])  # as a kill during a copy leaves it
    result = run_cli(*resumable_command(plugin, fixture.root, broken_db))
    assert result.code == 0, result.out + result.err
    assert f"warning: checkpoint {current} cannot be read" in result.out
    assert "resuming run 1 from its checkpoint after epoch 1" in result.out
    assert run_cli(*resumable_command(plugin, fixture.root, whole_db)).code == 0
    assert_same_training(whole_db, broken_db)


def test_two_stores_in_one_folder_never_share_a_checkpoint(plugin, tmp_path):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=12, num_test=20)
    first, second = tmp_path / "results" / "a.db", tmp_path / "results" / "b.db"
    interrupt_after_two_epochs(plugin, fixture.root, first)
    first_files = checkpoint_files(first)
    result = run_cli(*resumable_command(plugin, fixture.root, second))
    assert result.code == 0 and "resuming" not in result.out  # trained from scratch in its own store
    [run] = open_store(str(second), write=False).list_runs()
    assert run.status == "done" and len(open_store(str(second), write=False).steps(run.id)) == 6
    deleted = run_cli("runs", "rm", "1", env={"VBENCH_DB": str(second)})  # the same run id, the other store
    assert deleted.code == 0, deleted.err
    assert all(path.exists() for path in first_files)
    assert run_cli(*resumable_command(plugin, fixture.root, first)).out.count("resuming run 1") == 1


def test_a_postgresql_store_never_takes_a_sqlite_stores_checkpoint(plugin, tmp_path, fresh_database):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=12, num_test=20)
    sqlite_db = tmp_path / "results" / "vbench.db"
    interrupt_after_two_epochs(plugin, fixture.root, sqlite_db)
    command = [item if item != sqlite_db else fresh_database for item in resumable_command(plugin, fixture.root, sqlite_db)]
    result = run_cli(*command, cwd=tmp_path)  # checkpoints of a server store go under ./results as well
    assert result.code == 0 and "resuming" not in result.out, result.out + result.err
    store = open_store(fresh_database, write=False)
    [run] = store.list_runs()
    assert run.status == "done" and [s.step for s in store.steps(run.id)] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "results" / "checkpoints" / store.store_id / "run-1.pt").exists()


def test_a_run_survives_a_postgresql_restart(plugin, tmp_path, fresh_database, restart_postgres):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=60, num_test=20)
    process = start_cli("run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "8",
                        "--data-root", fixture.root, "--db", fresh_database, "--batch-size", "20", *FAST, cwd=tmp_path)

    def first_step_recorded() -> bool:
        try:
            store = open_store(fresh_database, write=False)
            runs = store.list_runs()
            return bool(runs) and bool(store.steps(runs[0].id))
        except Exception:  # noqa: BLE001 - the schema is being created
            return False

    wait_until(first_step_recorded, process)
    restart_postgres()  # the server goes away mid-run and is back within a second
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    store = open_store(fresh_database, write=False)
    [run] = store.list_runs()
    assert run.status == "done" and [s.step for s in store.steps(run.id)] == list(range(1, 9))
