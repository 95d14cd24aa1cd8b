"""Files vbench reads never run code, and bad input is one line, exit code 2, with nothing written: each case
found by trying vbench as a new user and as a hostile one would, through the command line."""

from __future__ import annotations

import os
import pickle
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from cli import run_cli
from plugins import FAST, write_plugin

from vbench.data.fixtures import write_fixture, write_image_folder_suite
from vbench.store import open_store
from vbench.store.artifacts import predictions_path, weights_path


class RunsCode:
    """A pickle that, when unpickled, creates the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished tiny run, its checkpoint kept."""
    folder = tmp_path_factory.mktemp("trained")
    plugin = write_plugin(folder)
    fixture = write_fixture("cifar10", folder / "data", per_batch=20, num_test=20)
    common = ["--suite", "cifar10", "--backbones", "tiny-test", "--data-root", fixture.root, "--db", folder / "runs.db",
              "--epochs", "1", "--batch-size", "10", "--plugin", plugin, *FAST]
    result = run_cli("run", *common)
    assert result.code == 0, result.out + result.err
    return {"folder": folder, "db": folder / "runs.db", "common": common, "plugin": plugin}


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".vbench-cache" not in str(p))


def store_dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return list(connection.iterdump())


# --- files vbench reads back never run code --------------------------------------------------------------------
def test_a_crafted_checkpoint_runs_no_code_on_resume(trained, tmp_path):
    store = open_store(str(trained["db"]))
    [run] = store.list_runs()
    checkpoint = store.artifact_dir("checkpoints") / f"run-{run.id}.pt"
    assert checkpoint.is_file()
    marker = tmp_path / "PWNED"
    checkpoint.write_bytes(pickle.dumps({"model": RunsCode(marker), "store_id": store.store_id, "run_id": run.id}))
    store.finish_run(run.id, "interrupted", error="killed")
    store.close()
    result = run_cli("run", *trained["common"])
    assert result.code == 0, result.out + result.err
    assert not marker.exists(), "unpickling the checkpoint ran code"
    assert "cannot be read" in result.out and "starting over" in result.out
    [run] = open_store(str(trained["db"]), write=False).list_runs()
    assert run.status == "done"


def test_eval_of_a_crafted_weights_file_runs_no_code(trained, tmp_path):
    marker = tmp_path / "PWNED"
    crafted = tmp_path / "weights.pt"
    crafted.write_bytes(pickle.dumps({"state_dict": RunsCode(marker)}))
    result = run_cli("eval", "--checkpoint", crafted, "--suite", "cifar10", "--backbones", "tiny-test", "--data-root",
                     trained["folder"] / "data", "--db", tmp_path / "eval.db", "--plugin", trained["plugin"])
    assert result.code == 2 and result.error_line.startswith(f"error: cannot read the weights {crafted}")
    assert not marker.exists() and not (tmp_path / "eval.db").exists()


def test_bench_runs_registered_benchmarks_only(tmp_path):
    script = tmp_path / "evil.py"
    script.write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w').close()\n")
    result = run_cli("bench", str(script))
    assert result.code == 2 and result.error_line.startswith(f"error: unknown benchmark {str(script)!r}; available: ")
    assert not (tmp_path / "PWNED").exists()


# --- bad input: one line, exit 2, nothing written ------------------------------------------------------------
def test_upgrading_needs_an_existing_store(tmp_path):
    result = run_cli("db", "upgrade", "--db", tmp_path / "missing" / "x.db")
    assert result.code == 2 and "no run store at" in result.error_line
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("toml, message", [
    ("epochs = 9223372036854775807", "key 'recipe.epochs' must be at most 100,000"),
    ("seed = 9223372036854775807", "key 'recipe.seed' must lie within ±2,147,483,647"),
    ("epochs = 100001", "key 'recipe.epochs' must be at most 100,000"),
    ("iterations = 1", "unknown key 'recipe.iterations'"),
    ("lr = nan", "key 'recipe.lr' must be a finite number, got nan"),
    ("lr = inf", "key 'recipe.lr' must be a finite number, got inf"),
    ("weight_decay = -inf", "key 'recipe.weight_decay' must be a finite number, got -inf"),
    ("lr = 1e300", "key 'recipe.lr' must be at most 100"),
])
def test_every_recipe_number_is_finite_and_bounded_in_a_suite_file(tmp_path, toml, message):
    suite = tmp_path / "mine.toml"
    suite.write_text(f'include = "digits"\n\n[recipe]\n{toml}\n')
    result = run_cli("run", "--suite", suite, "--backbones", "vit-0.5m", "--db", tmp_path / "runs.db")
    assert result.code == 2 and message in result.error_line and str(suite) in result.error_line, result.err
    assert files_under(tmp_path) == ["mine.toml"]


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "--lr: key 'recipe.lr' must be a finite number, got nan"),
    (["--lr", "-inf"], "--lr: key 'recipe.lr' must be a finite number, got -inf"),
    (["--set", "lr=inf"], "--set: key 'recipe.lr' must be a finite number, got inf"),
    (["--set", "label_smoothing=nan"], "--set: key 'recipe.label_smoothing' must be a finite number, got nan"),
    (["--epochs", "9223372036854775807"], "--epochs: key 'recipe.epochs' must be at most 100,000"),
    (["--batch-size", "99999999999"], "--batch-size: key 'recipe.batch_size' must be at most 1,048,576"),
    (["--seed", "99999999999999999999"], "--seed: key 'recipe.seed' must lie within ±2,147,483,647"),
    (["--seeds", ""], "--seeds '' has an empty item"),
    (["--seeds", "0,,1"], "--seeds '0,,1' has an empty item"),
    (["--suite", "FOLDER"], "is a folder; give a built-in suite name"),
])
def test_bad_run_options(tmp_path, args, message):
    base = {"--suite": "digits", "--backbones": "vit-0.5m", "--db": str(tmp_path / "runs.db")}
    base.update(dict(zip(args[::2], [str(tmp_path) if a == "FOLDER" else a for a in args[1::2]])))
    result = run_cli("run", *[item for pair in base.items() for item in pair], cwd=tmp_path)
    assert result.code == 2 and result.error_line.startswith(f"error: {message}") or message in result.error_line, \
        result.err
    assert files_under(tmp_path) == []


def test_labels_beyond_num_classes_are_refused_for_every_kind(tmp_path):
    suite = tmp_path / "seven.toml"
    suite.write_text('include = "digits"\nnum_classes = 7\n')
    result = run_cli("run", "--suite", suite, "--backbones", "vit-0.5m", "--db", tmp_path / "runs.db")
    assert result.code == 2, result.out + result.err
    assert "its train split holds label 9, but the suite says num_classes = 7" in result.error_line
    assert files_under(tmp_path) == ["seven.toml"]


@pytest.mark.parametrize("damage", ["extra val class", "no val"])
def test_an_image_folder_with_bad_val_writes_no_cache(tmp_path, damage):
    fixture = write_fixture("image-folder", tmp_path / "data")
    suite = write_image_folder_suite(tmp_path / "folder.toml", fixture.root, num_classes=3)
    val = Path(fixture.root) / "val"
    if damage == "no val":
        for path in sorted(val.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        val.rmdir()
    else:
        (val / "zebra").mkdir()
        next((val).iterdir()).joinpath("x.png").write_bytes(next(Path(fixture.root, "train").rglob("*.png")).read_bytes())
    before = files_under(tmp_path)
    result = run_cli("run", "--suite", suite, "--backbones", "vit-0.5m", "--db", tmp_path / "runs.db")
    assert result.code == 2 and "image folder" in result.error_line, result.err
    assert files_under(tmp_path) == before  # no train cache in the data folder, no store


def test_outputs_are_checked_before_any_work(trained, tmp_path):
    common = [*trained["common"], "--force"]
    db_before = store_dump(trained["db"])
    checkpoints_before = files_under(trained["folder"])
    result = run_cli("run", *common, "--tensorboard", "/proc/tb")
    assert result.code == 2 and "--tensorboard '/proc/tb' cannot be written" in result.error_line, result.err
    result = run_cli("eval", "--run", "1", "--db", trained["db"], "--results-file", tmp_path, "--plugin",
                     trained["plugin"], "--data-root", trained["folder"] / "data")
    assert result.code == 2 and f"--results-file {str(tmp_path)!r} is a folder" in result.error_line, result.err
    (tmp_path / "out" / "run-1").parent.mkdir()
    (tmp_path / "out" / "run-1").write_text("a file where the run's folder goes")
    result = run_cli("runs", "export", "1", "--output", tmp_path / "out", "--db", trained["db"])
    assert result.code == 2 and "run-1' is a file; give a folder" in result.error_line, result.err
    assert store_dump(trained["db"]) == db_before and files_under(trained["folder"]) == checkpoints_before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run-1"]


@pytest.mark.parametrize("args, message", [
    (["runs", "show", "abc"], "Invalid value for 'run_id'"),
    (["runs", "show", "-1"], "No such option: -1"),
    (["eval", "--run", "abc"], "Invalid value for '--run'"),
    (["leaderboard", "--port", "abc"], "Invalid value for '--port'"),
    (["run", "--epochs", "abc"], "Invalid value for '--epochs'"),
    (["robustness", "--severities", "1,,2"], "--severities '1,,2' has an empty item"),
    (["robustness", "--corruptions", "fog,"], "--corruptions 'fog,' has an empty item"),
])
def test_bad_values_are_one_line_not_a_usage_block(tmp_path, args, message):
    extra = ["--suite", "cifar10", "--db", tmp_path / "runs.db"] if args[0] == "robustness" else []
    result = run_cli(*args, *extra)
    assert result.code == 2 and message in result.error_line, result.err
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["speed", "--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
    (["kernels", "--mixers", "bogus"], "--mixers: unknown 'bogus'"),
])
def test_benchmark_options_are_one_line(args, message):
    result = run_cli("bench", *args)
    assert result.code == 2 and message in result.error_line, result.err


# --- faults ------------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_weights_on_a_full_disk_are_one_line_and_leave_no_file(tmp_path, small_disk):
    result = run_cli("run", "--suite", "digits", "--backbones", "vit-0.5m", "--db", tmp_path / "runs.db", "--epochs",
                     "1", "--no-checkpoints", "--limit", "64", env={"VBENCH_ARTIFACTS": str(small_disk)})
    assert result.code == 1, result.out + result.err  # the run failed; the table shows it
    [run] = open_store(str(tmp_path / "runs.db"), write=False).list_runs()
    assert run.status == "failed" and run.error.startswith(f"the disk holding {small_disk / 'weights'}/"), run.error
    assert " is full: " in run.error
    assert [p for p in small_disk.rglob("*") if p.is_file()] == []


def test_a_failed_predictions_write_takes_the_weights_with_it(trained, tmp_path, monkeypatch):
    from vbench.engine import runner
    from vbench.errors import VbenchError

    def full_disk(path, predictions):
        raise VbenchError(f"the disk holding {Path(path).parent} is full: 0.0 MiB are free")

    monkeypatch.setattr(runner, "save_predictions", full_disk)
    result = run_cli("run", *trained["common"], "--force")
    assert result.code == 1, result.out + result.err
    store = open_store(str(trained["db"]), write=False)
    failed = store.list_runs(status="failed")[-1]
    assert "is full" in failed.error
    assert not weights_path(store, failed.id).exists() and not predictions_path(store, failed.id).exists()


def test_final_files_follow_the_umask(trained):
    store = open_store(str(trained["db"]), write=False)
    [run] = store.list_runs(status="done")[:1]
    for path in (weights_path(store, run.id), predictions_path(store, run.id)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask(), path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
