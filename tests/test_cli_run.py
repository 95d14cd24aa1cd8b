"""`vbench run` end to end on the CPU: tiny backbones (a --plugin file) on fixture data of every format."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vbench import cli
from vbench.data.fixtures import write_fixture, write_image_folder_suite
from vbench.store import open_store

REPO = Path(__file__).resolve().parent.parent

PLUGIN = '''
import torch
import torch.nn as nn
from timm.layers import DropPath
from vbench import registry


def register_backbone(name, **options):
    """Every test loads this file afresh (conftest unregisters plugin backbones after each test)."""
    if name in registry._SPECS:
        registry.unregister_backbone(name)
    return registry.register_backbone(name, **options)


class Tiny(nn.Module):
    """Conv stem, one residual block with drop-path, dropout before the head: every RNG a run has."""

    def __init__(self, num_classes, drop_path, mode="ok"):
        super().__init__()
        self.mode = mode
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.GELU(), nn.Conv2d(8, 8, 3, padding=1))
        self.drop_path = DropPath(drop_path)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        if self.mode == "boom" and self.training:
            raise RuntimeError("boom from the test backbone")
        if self.mode == "ctrlc" and self.training:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls > 4:  # one epoch is four steps in the test
                raise KeyboardInterrupt
        x = self.stem(x)
        x = x + self.drop_path(self.block(x))
        logits = self.head(self.dropout(x.mean(dim=(2, 3))))
        return logits * float("nan") if self.mode == "nan" and self.training else logits


@register_backbone("tiny-test", family="test", paper_names=["Tiny"], in_paper=False)
def tiny_test(img_size: int = 32, num_classes: int = 10, drop_path: float = 0.0, **overrides):
    """A tiny conv net for the engine's tests."""
    return Tiny(num_classes, drop_path)


@register_backbone("tiny-nan", family="test", in_paper=False)
def tiny_nan(img_size: int = 32, num_classes: int = 10, drop_path: float = 0.0, **overrides):
    """Its training loss is NaN from the first step."""
    return Tiny(num_classes, drop_path, mode="nan")


@register_backbone("tiny-ctrlc", family="test", in_paper=False)
def tiny_ctrlc(img_size: int = 32, num_classes: int = 10, drop_path: float = 0.0, **overrides):
    """As if the user pressed Ctrl-C in its second epoch."""
    return Tiny(num_classes, drop_path, mode="ctrlc")


@register_backbone("tiny-boom", family="test", in_paper=False)
def tiny_boom(img_size: int = 32, num_classes: int = 10, drop_path: float = 0.0, **overrides):
    """Raises inside its training forward pass."""
    return Tiny(num_classes, drop_path, mode="boom")
'''

FAST = ["--set", "repeats=1", "--set", "eval_batch_size=64", "--set", "warmup_epochs=1", "--set", "autoaugment=none"]


def write_plugin(folder: Path) -> str:
    path = folder / "tiny_backbones.py"
    path.write_text(PLUGIN)
    return str(path)


@pytest.fixture
def plugin(tmp_path) -> str:
    # a new path per test: the registry imports a plugin path once per process
    return write_plugin(tmp_path)


def vbench_process(*args, env=None) -> subprocess.Popen:
    # as many intra-op threads as this process (conftest sets one): results of the two are compared bit for bit
    threads = str(torch.get_num_threads())
    return subprocess.Popen([sys.executable, "-m", "vbench", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": threads, **(env or {})})


def db_rows(db: Path) -> tuple[list[tuple], list[tuple]]:
    with sqlite3.connect(db) as connection:
        runs = connection.execute("SELECT id, suite, backbone, seed, status, epochs_done, error FROM runs ORDER BY id").fetchall()
        epochs = connection.execute("SELECT run_id, epoch FROM epochs ORDER BY run_id, epoch").fetchall()
    return runs, epochs


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
def test_run_leaves_a_done_row_with_metrics_and_epochs(kind, plugin, tmp_path, vbench_cli):
    options, suite, flags = FORMATS[kind]
    fixture = write_fixture(kind, tmp_path / "data", **options)
    if suite is None:
        suite = str(write_image_folder_suite(tmp_path / "folder.toml", fixture.root, num_classes=3))
    db = tmp_path / "runs.db"
    code, out, err = vbench_cli("run", "--suite", suite, "--backbones", "tiny-test", "--plugin", plugin,
                            "--epochs", "2", "--data-root", str(fixture.root), "--db", str(db), *flags, *FAST)
    assert code == 0, out + err
    [run] = open_store(f"sqlite:///{db}").list_runs()
    assert (run.status, run.backbone, run.seed, run.epochs, run.epochs_done, run.error) == ("done", "tiny-test", 0, 2, 2, None)
    assert run.dataset == {"image-folder": "image-folder"}.get(kind, kind) and run.task == "classification"
    assert 0.0 <= run.top1 <= run.top5 <= 100.0
    assert run.params == 8 * 27 + 8 + 8 * 72 + 8 + 8 * run.num_classes + run.num_classes
    assert run.flops > 0 and run.train_images_per_s > 0 and run.wall_time_s > 0
    assert run.peak_memory_bytes > 2**20 and run.peak_memory_kind == "process_peak_rss"
    assert run.recipe["epochs"] == 2 and run.recipe["repeats"] == 1 and run.settings["device"] == "cpu"
    assert run.torch_version == torch.__version__ and run.device_name.startswith("cpu") and run.host
    epochs = open_store(f"sqlite:///{db}").epochs(run.id)
    assert [e.epoch for e in epochs] == [1, 2]
    assert epochs[-1].top1 == run.top1 and epochs[-1].top5 == run.top5
    assert all(e.train_loss > 0 and e.lr > 0 and e.images_per_s > 0 and e.time_s > 0 for e in epochs)
    assert "vbench run:" in out and "done" in out  # the summary table


def test_seeds_skip_force_nan_and_crash(plugin, tmp_path, vbench_cli):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    common = ["--suite", "cifar10", "--plugin", plugin, "--epochs", "1", "--data-root", str(fixture.root),
              "--db", str(tmp_path / "runs.db"), "--batch-size", "10", *FAST]
    code, out, err = vbench_cli("run", "--backbones", "tiny-nan,tiny-boom,tiny-test", "--seeds", "0,1", *common)
    assert code == 1, out + err  # some run failed; the others went on
    runs, epochs = db_rows(tmp_path / "runs.db")
    assert [(r[2], r[3], r[4]) for r in runs] == [
        ("tiny-nan", 0, "failed"), ("tiny-nan", 1, "failed"), ("tiny-boom", 0, "failed"), ("tiny-boom", 1, "failed"),
        ("tiny-test", 0, "done"), ("tiny-test", 1, "done")]
    assert runs[0][6] == "non-finite training loss (nan) in epoch 1 by step 1"
    assert runs[2][6] == "RuntimeError: boom from the test backbone"
    assert epochs == [(5, 1), (6, 1)]
    # the same command again: finished runs are skipped, failed ones retried (and fail again)
    code, out, _ = vbench_cli("run", "--backbones", "tiny-test", "--seeds", "0,1", *common)
    assert code == 0 and out.count("already done") == 2
    assert db_rows(tmp_path / "runs.db")[0] == runs
    code, out, _ = vbench_cli("run", "--backbones", "tiny-test", "--seeds", "1", "--force", *common)
    assert code == 0
    runs_after, epochs_after = db_rows(tmp_path / "runs.db")
    assert runs_after[:6] == runs and runs_after[6][2:5] == ("tiny-test", 1, "done")
    assert epochs_after == epochs + [(7, 1)]
    # a different recipe is a different experiment
    code, out, _ = vbench_cli("run", "--backbones", "tiny-test", "--seeds", "0", "--lr", "5e-4", *common)
    assert code == 0 and "already done" not in out and len(db_rows(tmp_path / "runs.db")[0]) == 8


def test_reference_pipeline_run(plugin, tmp_path, vbench_cli):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    db = tmp_path / "runs.db"
    code, out, err = vbench_cli("run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin,
                            "--epochs", "1", "--pipeline", "reference", "--data-root", str(fixture.root), "--db", str(db),
                            "--batch-size", "10", *FAST)
    assert code == 0, out + err
    [run] = open_store(f"sqlite:///{db}").list_runs()
    assert (run.status, run.epochs_done, run.settings["pipeline"]) == ("done", 1, "reference")
    assert run.top1 is not None and run.train_images_per_s > 0


# --- bad input: exit 2, one line, database unchanged -----------------------------------------------
@pytest.fixture(scope="module")
def filled_db(tmp_path_factory):
    """A store holding one finished run; the bad-input tests check that it stays exactly so."""
    tmp_path = tmp_path_factory.mktemp("filled")
    plugin = write_plugin(tmp_path)
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    db = tmp_path / "runs.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["vbench", "run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin,
                                    "--epochs", "1", "--data-root", str(fixture.root), "--db", str(db),
                                    "--batch-size", "10", *FAST])
        cli.main()
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
    (["--suite", "cifar11"], "unknown suite 'cifar11'"),
    (["--set", "lr=fast"], "--set: key 'lr' must be a number"),
    (["--set", "warmup=3"], "--set: unknown recipe key 'warmup'"),
    (["--set", "lr"], "--set 'lr' is not key=value"),
    (["--seeds", "0,x"], "--seeds '0,x' is not a comma-separated list of integers"),
    (["--device", "cuda"], "--device cuda was asked for but torch sees no CUDA GPU"),
    (["--pipeline", "fast"], "unknown --pipeline 'fast'"),
    (["--data-root", "/nonexistent/vbench-data"], "CIFAR-10 not found: /nonexistent/vbench-data"),
])
def test_bad_input_exits_2_and_leaves_the_database_unchanged(args, message, plugin, filled_db, vbench_cli):
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    db, data_root = filled_db
    before = snapshot(db)
    base = {"--suite": "cifar10", "--backbones": "tiny-test", "--data-root": str(data_root)}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [item for pair in base.items() for item in pair] + [a for a in args if a not in base and a not in base.values()]
    code, out, err = vbench_cli("run", *flat, "--plugin", plugin, "--epochs", "1", "--db", str(db),
                            "--batch-size", "10", "--force", *FAST)
    assert code == 2, out + err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert snapshot(db) == before


def test_unwritable_database_path(plugin, filled_db, tmp_path, vbench_cli):
    _, data_root = filled_db
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, out, err = vbench_cli("run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin,
                            "--data-root", str(data_root), "--db", str(blocker / "runs.db"), *FAST)
    assert code == 2 and err.startswith("error: database path") and err.count("\n") == 1
    assert blocker.read_text() == "x"


# --- killed, interrupted, resumed: the same weights and metrics as an uninterrupted run -------------
def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)


def final_state(db: Path) -> tuple[dict, list[tuple], tuple]:
    [checkpoint] = (db.parent / "checkpoints").glob("*.pt")
    state = torch.load(checkpoint, weights_only=False)
    with sqlite3.connect(db) as connection:
        epochs = connection.execute(
            "SELECT epoch, train_loss, train_acc, lr, top1, top5 FROM epochs ORDER BY epoch").fetchall()
        run = connection.execute("SELECT status, top1, top5, epochs_done, params, flops FROM runs").fetchall()
    return state, epochs, run


def test_sigkill_then_resume_equals_an_uninterrupted_run(plugin, tmp_path, vbench_cli):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=60, num_test=40)

    def command(db: Path) -> list[str]:
        return ["run", "--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "6",
                "--data-root", str(fixture.root), "--db", str(db), "--batch-size", "20", "--seed", "7", *FAST]

    whole_db, broken_db = tmp_path / "whole" / "runs.db", tmp_path / "broken" / "runs.db"
    killed = vbench_process(*command(broken_db))
    [checkpoint] = _wait_glob(broken_db.parent / "checkpoints", killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert torch.load(checkpoint, weights_only=False)["epoch"] < 6
    [(status, epochs_done)] = [(r[4], r[5]) for r in db_rows(broken_db)[0]]
    assert status == "running" and epochs_done < 6  # killed mid-run, before it was recorded as done

    # The same command again (in this process, which saves a second start-up of torch) resumes it.
    code, out, err = vbench_cli(*command(broken_db))
    assert code == 0, out + err
    assert "resuming run 1 from its checkpoint after epoch" in out
    code, out, err = vbench_cli(*command(whole_db))
    assert code == 0 and "resuming" not in out, out + err

    whole_state, whole_epochs, whole_run = final_state(whole_db)
    broken_state, broken_epochs, broken_run = final_state(broken_db)
    assert len(db_rows(broken_db)[0]) == 1  # the resumed run kept its row
    assert whole_run == broken_run and whole_run[0][0] == "done"
    assert whole_epochs == broken_epochs and [e[0] for e in whole_epochs] == [1, 2, 3, 4, 5, 6]
    assert whole_state["model"].keys() == broken_state["model"].keys()
    for name, tensor in whole_state["model"].items():
        assert torch.equal(tensor, broken_state["model"][name]), name
    for whole, broken in zip(whole_state["history"], broken_state["history"]):  # all but the timings
        assert {k: v for k, v in whole.items() if k not in ("images_per_s", "time_s")} == \
               {k: v for k, v in broken.items() if k not in ("images_per_s", "time_s")}


def test_ctrl_c_marks_the_run_interrupted_and_exits_130(plugin, tmp_path, vbench_cli):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    code, out, err = vbench_cli("run", "--suite", "cifar10", "--backbones", "tiny-ctrlc,tiny-test",
                            "--plugin", plugin, "--epochs", "2", "--data-root", str(fixture.root),
                            "--db", str(tmp_path / "runs.db"), "--batch-size", "10", *FAST)
    assert code == 130, out + err
    runs, epochs = db_rows(tmp_path / "runs.db")
    # interrupted in its second epoch; the backbones after it never started
    assert runs == [(1, "cifar10", "tiny-ctrlc", 0, "interrupted", 1, "interrupted by the user (Ctrl-C)")]
    assert epochs == [(1, 1)]


def _wait_glob(folder: Path, process: subprocess.Popen) -> list[Path]:
    deadline = time.monotonic() + 120
    while True:
        found = list(folder.glob("*.pt"))
        if found:
            return found
        assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
        time.sleep(0.005)


# --- two processes, one SQLite file ----------------------------------------------------------------
def _has_a_run(db: Path) -> bool:
    try:
        return db.exists() and bool(db_rows(db)[0])
    except sqlite3.OperationalError:  # the other process is creating the tables
        return False


def test_two_processes_share_one_sqlite_file(plugin, tmp_path, vbench_cli):
    """A `vbench run` subprocess and one in this process write the same SQLite file at the same time."""
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=20, num_test=20)
    db = tmp_path / "shared.db"
    common = ["--suite", "cifar10", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "3",
              "--data-root", str(fixture.root), "--db", str(db), "--batch-size", "10", *FAST]
    other = vbench_process("run", "--seeds", "0,1,2", *common)
    deadline = time.monotonic() + 120
    while not _has_a_run(db):  # start writing once the other process is writing
        assert other.poll() is None and time.monotonic() < deadline, other.stdout.read()
        time.sleep(0.01)
    code, out, err = vbench_cli("run", "--seeds", "3,4,5", *common)
    assert code == 0, out + err
    output = other.communicate(timeout=300)[0]
    assert other.returncode == 0, output
    runs, epochs = db_rows(db)
    assert sorted((r[3], r[4], r[5]) for r in runs) == [(seed, "done", 3) for seed in range(6)]
    assert sorted(epochs) == sorted((r[0], e) for r in runs for e in (1, 2, 3))
    with sqlite3.connect(db) as connection:
        spans = connection.execute("SELECT seed, started_at, ended_at FROM runs").fetchall()
    ours = [(start, end) for seed, start, end in spans if seed >= 3]
    theirs = [(start, end) for seed, start, end in spans if seed < 3]
    assert min(s for s, _ in ours) < max(e for _, e in theirs)  # the two really overlapped
