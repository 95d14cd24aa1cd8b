"""The command line around training: `run --family/--dry-run/--tensorboard`, `eval`, `runs show/export`, the
data column of `runs`, and `list backbones` at narrow terminals; all through the CLI harness on tiny runs."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
import readme
import yaml
from cli import run_cli
from plugins import FAST, write_plugin

from vbench.data.fixtures import write_fixture
from vbench.models import registry
from vbench.recipes import ClassificationRecipe
from vbench.store import open_store


@pytest.fixture
def plugin(tmp_path) -> str:
    return write_plugin(tmp_path)  # a new path per test: a plugin path is imported once per process


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with tiny-test trained for 2 epochs under seeds 0 and 1 on a CIFAR-10 fixture."""
    root = tmp_path_factory.mktemp("trained")
    fixture = write_fixture("cifar10", root / "data", per_batch=8, num_test=20)
    db = root / "runs.db"
    common = ["--suite", "cifar10", "--data-root", fixture.root, "--db", db, "--batch-size", "10", *FAST]
    result = run_cli("run", "--backbones", "tiny-test", "--plugin", write_plugin(root), "--epochs", "2",
                     "--seeds", "0,1", *common)
    assert result.code == 0, result.out + result.err
    return {"db": db, "data": fixture.root, "common": common}


def snapshot(db: Path) -> tuple:
    """The SQL content and the files beside the database (the data's decode cache aside)."""
    with sqlite3.connect(db) as connection:
        dump = list(connection.iterdump())
    connection.close()
    return dump, sorted(str(p.relative_to(db.parent)) for p in db.parent.rglob("*") if ".vbench-cache" not in str(p))


# --- run --dry-run -----------------------------------------------------------------------------------
def test_dry_run_prints_the_resolved_recipe_and_the_jobs_and_writes_nothing(trained, plugin):
    before = snapshot(trained["db"])
    result = run_cli("run", "--backbones", "tiny-test,tiny-none", "--plugin", plugin, "--epochs", "2", "--seeds",
                     "0,2", *trained["common"], "--set", "lr=5e-4", "--dry-run")
    assert result.code == 0, result.err
    lines = result.out.splitlines()

    def row(key: str) -> list[str]:
        [line] = [line for line in lines if line.startswith(f"│ {key} ")]
        return [cell.strip() for cell in line.strip("│").split("│")]

    # every recipe key; * = set on the command line (with the suite file's value), ! = not the paper's value
    assert row("epochs") == ["epochs", "2 *!", "100", "100"]
    assert row("lr") == ["lr", "0.0005 *!", "0.001", "0.001"]
    assert row("optimizer") == ["optimizer", "adamw", "", ""]
    assert row("warmup_epochs") == ["warmup_epochs", "0 *!", "10", "10"]  # the warm-up followed the epochs
    assert all(any(line.startswith(f"│ {f.name} ") for line in lines) for f in dataclasses.fields(ClassificationRecipe))
    def jobs(output: str) -> list[list[str]]:
        return [[cell.strip() for cell in line.strip("│").split("│")] for line in output.splitlines()
                if line.startswith("│ tiny-")]

    # jobs: lr changed, so seed 0 is a new experiment: nothing of it is done yet
    assert [job[:2] + job[4:] for job in jobs(result.out)][:2] == [["tiny-test", "0", "to run"],
                                                                  ["tiny-test", "2", "to run"]]
    assert jobs(result.out)[0][2] == "0.0009M" and "cannot run: backbone 'tiny-none'" in result.out
    assert "dry run: nothing was trained or written" in result.out
    same = run_cli("run", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "2", "--seeds", "0,2",
                   *trained["common"], "--dry-run")
    assert [job[4] for job in jobs(same.out)] == ["done (run 1): skipped", "to run"]
    assert snapshot(trained["db"]) == before
    fresh = trained["db"].parent / "fresh" / "none.db"
    result = run_cli("run", "--backbones", "tiny-test", "--plugin", plugin, *trained["common"], "--db", fresh,
                     "--dry-run")
    assert result.code == 0 and "to run" in result.out and not fresh.parent.exists()


# --- --family -----------------------------------------------------------------------------------------
def test_family_selects_like_timm_module_filter(trained, plugin):
    listed = run_cli("list", "backbones", "--family", "swin", "--json")
    assert [row["name"] for row in json.loads(listed.out)] == ["swin-t", "swin-s"]
    planned = run_cli("run", "--family", "test", "--plugin", plugin, *trained["common"], "--epochs", "2", "--dry-run")
    assert planned.code == 0, planned.err
    for name in ("tiny-test", "tiny-nan", "tiny-boom", "tiny-none"):
        assert f"│ {name} " in planned.out
    narrowed = run_cli("run", "--family", "test", "--backbones", "tiny-t*", "--plugin", plugin, *trained["common"],
                       "--dry-run")
    assert "│ tiny-test " in narrowed.out and "tiny-nan" not in narrowed.out
    runs = run_cli("runs", "--db", trained["db"], "--family", "test")
    assert runs.code == 0 and runs.out.count("tiny-test") == 2
    runs = run_cli("runs", "--db", trained["db"], "--backbones", "tiny-*")  # a pattern over stored names
    assert runs.code == 0 and runs.out.count("tiny-test") == 2
    report = run_cli("report", "--db", trained["db"], "--family", "test", "--format", "json")
    assert report.code == 0 and json.loads(report.out)["sections"][0]["rows"][0]["backbone"] == "tiny-test"


@pytest.mark.parametrize("args, message", [
    (["run", "--suite", "cifar10", "--family", "swin", "--backbones", "vit-lite"],
     "backbone 'vit-lite' is in family 'vit', not 'swin'"),
    (["run", "--suite", "cifar10", "--family", "swim"], "no backbone with a classification model in family 'swim'"),
    (["run", "--suite", "cifar10"], "give --backbones"),
    (["list", "backbones", "--family", "swim"], "no backbone in family 'swim'; families: cait,"),
])
def test_family_bad_input_is_one_line(args, message, tmp_path):
    result = run_cli(*args, "--db", tmp_path / "x.db") if args[0] == "run" else run_cli(*args)
    assert result.code == 2 and message in result.error_line
    assert list(tmp_path.iterdir()) == []


# --- eval -----------------------------------------------------------------------------------------------
def test_eval_reproduces_a_runs_final_metrics_and_stays_out_of_training_reports(trained, plugin, tmp_path):
    db = tmp_path / "runs.db"
    for item in trained["db"].parent.iterdir():  # a copy of the store with its files
        if item.name != "data":
            (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    store = open_store(str(db), write=False)
    first = store.get_run(1)
    report_before = json.loads(run_cli("report", "--db", db, "--format", "json").out)
    results = tmp_path / "eval.json"
    result = run_cli("eval", "--run", "1", "--db", db, "--plugin", plugin, "--data-root", trained["data"],
                     "--results-file", results)
    assert result.code == 0, result.out + result.err
    record = json.loads(results.read_text())
    # the same weights on the same test split: the run's own final metrics, bit for bit
    assert record["metrics"] == first.metrics and record["source"] == "run 1" and record["eval_only"] is True
    assert record["params"] == first.params and record["data_id"] == first.data_id
    weights = next((db.parent / "weights").glob("*/run-2.safetensors"))
    by_file = run_cli("eval", "--suite", "cifar10", "--backbones", "tiny-test", "--checkpoint", weights, "--db", db,
                      "--plugin", plugin, "--data-root", trained["data"], "--set", "eval_batch_size=7")
    assert by_file.code == 0, by_file.err
    eval_rows = [run for run in open_store(str(db), write=False).list_runs() if (run.settings or {}).get("eval_only")]
    assert [(run.id, run.status, run.steps, run.settings["source"]) for run in eval_rows] == \
        [(3, "done", 0, "run 1"), (4, "done", 0, str(weights))]
    assert eval_rows[1].metrics == store.get_run(2).metrics and eval_rows[1].recipe_hash.startswith("eval-")
    # kept out of the training report's averages (n stays 2), shown alone when asked for
    assert json.loads(run_cli("report", "--db", db, "--format", "json").out) == report_before
    only = json.loads(run_cli("report", "--db", db, "--format", "json", "--eval-only").out)
    assert [r["run_ids"] for r in only["sections"][0]["rows"]] == [[4]]  # the newest eval group
    assert "eval only" in run_cli("runs", "--db", db).out
    # a later training run of the same key is not taken for done by an eval row
    again = run_cli("run", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "2", "--seeds", "0",
                    *trained["common"], "--db", db, "--dry-run")
    assert "done (run 1): skipped" in again.out


@pytest.mark.parametrize("args, message", [
    (["--backbones", "vit-lite", "--checkpoint", "WEIGHTS"], "do not fit backbone 'vit-lite': "),
    (["--checkpoint", "WEIGHTS"], "--checkpoint needs --suite and --backbones"),
    (["--backbones", "tiny-test"], "give --checkpoint FILE or --run ID"),
    (["--backbones", "tiny-test", "--checkpoint", "nope.pt"], "--checkpoint 'nope.pt' is not a file"),
    (["--backbones", "tiny-test", "--run", "99"], "no run with id 99"),
])
def test_eval_bad_input_is_one_line_and_writes_nothing(trained, plugin, args, message):
    weights = next((trained["db"].parent / "weights").glob("*/run-1.safetensors"))
    args = [str(weights) if a == "WEIGHTS" else a for a in args]
    suite = ["--suite", "cifar10"] if "--checkpoint needs" not in message else []
    before = snapshot(trained["db"])
    result = run_cli("eval", *suite, *args, "--db", trained["db"], "--plugin", plugin, "--data-root", trained["data"])
    assert result.code == 2 and message in result.error_line
    assert snapshot(trained["db"]) == before


# --- runs show / export / the data column -----------------------------------------------------------------
def test_runs_show_prints_recipe_environment_data_history_and_files(trained):
    store = open_store(str(trained["db"]), write=False)
    run, steps = store.get_run(1), store.steps(1)
    result = run_cli("runs", "show", "1", "--db", trained["db"])
    assert result.code == 0, result.err
    out = result.out
    assert "run 1: tiny-test (test) on suite cifar10, seed 0" in out
    assert f"Recipe {run.recipe_hash}" in out and re.search(r"│ autoaugment +│ none", out)
    assert f"Data {run.data_id}" in out and "train 40, test 20" in out and run.host in out
    assert "Per epoch" in out and "eval_top1" in out and "train_loss" in out
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█")  # the sparklines
    for kind in ("checkpoint", "weights", "predictions"):
        assert kind in out
    assert str(next((trained["db"].parent / "weights").glob("*/run-1.safetensors"))) in out
    record = json.loads(run_cli("runs", "show", "1", "--db", trained["db"], "--json").out)
    assert [row["epoch"] for row in record["history"]] == [s.step for s in steps]
    assert [row["eval_top1"] for row in record["history"]] == [s.metrics["top1"] for s in steps]
    listing = run_cli("runs", "--db", trained["db"])
    assert run.data_id[:8] in listing.out and "data" in listing.out
    missing = run_cli("runs", "show", "9", "--db", trained["db"])
    assert missing.code == 2 and "no run with id 9" in missing.error_line


def test_runs_export_writes_args_summary_and_results_per_run(trained, tmp_path):
    result = run_cli("runs", "export", "2", "--output", tmp_path / "one", "--db", trained["db"])
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "one" / "run-2").iterdir()) == ["args.yaml", "results.json", "summary.csv"]
    run = open_store(str(trained["db"]), write=False).get_run(2)
    args = yaml.safe_load((tmp_path / "one" / "run-2" / "args.yaml").read_text())
    assert args["backbone"] == "tiny-test" and args["seed"] == 1 and args["recipe"] == run.recipe
    with open(tmp_path / "one" / "run-2" / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # timm's layout: one row per epoch, train_ and eval_ columns
    assert list(rows[0])[:5] == ["epoch", "train_loss", "train_acc", "eval_top1", "eval_top5"]
    assert float(rows[-1]["eval_top1"]) == run.metrics["top1"]
    results = json.loads((tmp_path / "one" / "run-2" / "results.json").read_text())
    assert results["metrics"] == run.metrics and results["data_id"] == run.data_id and results["files"]["weights"]
    suite = run_cli("runs", "export", "--suite", "cifar10", "--output", tmp_path / "all", "--db", trained["db"])
    assert suite.code == 0 and sorted(p.name for p in (tmp_path / "all").iterdir()) == ["run-1", "run-2"]
    both = run_cli("runs", "export", "1", "--suite", "cifar10", "--output", tmp_path / "x", "--db", trained["db"])
    assert both.code == 2 and "not both" in both.error_line and not (tmp_path / "x").exists()


# --- --tensorboard ---------------------------------------------------------------------------------------------
def test_tensorboard_logs_every_recorded_epoch(trained, plugin, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'vbench[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    db = tmp_path / "runs.db"
    result = run_cli("run", "--backbones", "tiny-test", "--plugin", plugin, "--epochs", "2", *trained["common"],
                     "--db", db, "--tensorboard", tmp_path / "tb")
    assert result.code == 0, result.out + result.err
    [folder] = (tmp_path / "tb" / "cifar10" / "tiny-test").iterdir()
    assert folder.name == "seed0-run1"
    events = EventAccumulator(str(folder))
    events.Reload()
    steps = open_store(str(db), write=False).steps(1)
    assert {"eval/top1", "eval/top5", "train/loss", "train/acc", "lr", "images_per_s"} <= set(events.Tags()["scalars"])
    logged = events.Scalars("eval/top1")
    assert [e.step for e in logged] == [1, 2]
    assert [e.value for e in logged] == pytest.approx([s.metrics["top1"] for s in steps])
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([s.metrics["train_loss"] for s in steps])


# --- list backbones at any width ---------------------------------------------------------------------------------
@pytest.mark.parametrize("columns", [120, 80, 60, 45, 30])
def test_list_never_cuts_a_name_or_a_number(columns, plugin):
    result = run_cli("list", "backbones", env={"COLUMNS": str(columns)})
    assert result.code == 0
    assert "…" not in result.out
    words = set(result.out.replace("│", " ").replace(",", " ").split())
    for spec in registry.list_backbones():
        assert spec.name in words, spec.name
    assert max(len(line) for line in result.out.splitlines()) <= max(columns, max(len(s.name) for s in
                                                                               registry.list_backbones()))
    measured = run_cli("list", "backbones", "tiny-test,vit-0.5m", "--measure", "--plugin", plugin,
                       env={"COLUMNS": str(columns)})
    rows = {row["name"]: row for row in json.loads(run_cli("list", "backbones", "tiny-test,vit-0.5m", "--measure",
                                                           "--json", "--plugin", plugin).out)}
    words = set(measured.out.replace("│", " ").split())
    assert "…" not in measured.out
    for name, row in rows.items():
        assert name in words and f"{row['flops'] / 1e6:.2f}M" in words


# --- the README's commands -------------------------------------------------------------------------------------
def test_the_readme_commands_before_beside_and_after_a_run(tmp_path):
    import importlib.util

    import torch
    from safetensors.torch import load_file

    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    db = tmp_path / "results" / "vbench.db"
    where = ["--db", db]
    data = ["--data-root", fixture.root]
    commands = readme.commands("### Before, beside and after a run")
    assert [c[0] for c in commands] == ["run", "run", "eval", "eval", "runs", "runs", "report"]
    outputs = []
    for command in commands:
        extra = [*where]
        if command[0] in ("run", "eval"):
            extra += data
        if command[0] == "run":
            extra += ["--batch-size", "10", *FAST]
            if "--tensorboard" in command and importlib.util.find_spec("tensorboard") is None:
                index = command.index("--tensorboard")
                command = command[:index] + command[index + 2:]  # the optional extra is not installed here
        if "--checkpoint" in command:  # a user's torch checkpoint of the run's weights
            weights = load_file(next((db.parent / "weights").glob("*/run-1.safetensors")))
            torch.save({"model": weights}, tmp_path / command[command.index("--checkpoint") + 1])
        result = run_cli(*command, *extra, cwd=tmp_path)
        assert result.code == 0, (command, result.out + result.err)
        outputs.append(result.out)
    dry, trained, by_file, by_run, show, export, report = outputs
    assert "0.0005 *!" in dry and "to run" in dry and "dry run: nothing was trained or written" in dry
    [run] = [r for r in open_store(str(db), write=False).list_runs() if not (r.settings or {}).get("eval_only")]
    assert (run.id, run.backbone, run.steps_done, run.data["limit"]) == (1, "vit-lite", 1, 40)
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((tmp_path / "results" / "tb" / "cifar10" / "vit-lite").iterdir())
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["source"] == "run 1" and record["metrics"]["top1"] == run.metrics["top1"]
    assert "Per epoch" in show and "vit-lite" in show
    assert sorted(p.name for p in (tmp_path / "results" / "export").iterdir()) == ["run-1", "run-2", "run-3"]
    evaluated = {r.id for r in open_store(str(db), write=False).list_runs() if (r.settings or {}).get("eval_only")}
    assert evaluated == {2, 3} and "ViT/1M" in report and "eval-" in report  # the eval-only rows alone
