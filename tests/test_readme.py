"""Every command of the README, read from README.md as it stands and run through the CLI.

The sections whose commands are run by other test files are named in ``RUN_ELSEWHERE``; this file runs the
others. What a test adds to a README command is only what the test machine needs: the fixture's data root
and store for the user's own folders, a small ``--limit`` and fast recipe keys so that it takes seconds, and
no ``--download`` (the tests never use the network; the download code is tested on a local server)."""

from __future__ import annotations

import csv
import io
import json

import pytest
import readme
from cli import REPO, run_cli
from plugins import FAST

from vbench.data.fixtures import write_fixture
from vbench.store import open_store

# section -> the test files that read its commands from the README and run them
RUN_ELSEWHERE = {
    "### Your own backbone": ["test_readme_plugin.py"],
    "### Before, beside and after a run": ["test_cli_tools.py"],
    "## Leaderboard": ["test_leaderboard.py"],
    "## Scaling out": ["test_slurm.py", "test_distributed.py"],
    "## Speed on the CPU": ["test_precision.py"],
    "## Deployment": ["test_deploy.py"],
    "## Segmentation (ADE20K, Tables 6-7)": ["test_segmentation.py"],
    "## Equal-budget tuning": ["test_tune.py"],
    "## What large kernels see": ["test_analysis.py"],
    "## Data at scale: shards, streaming, ImageNet": ["test_stream.py"],
    "### ImageNet": ["test_imagenet.py"],
}
RUN_HERE = ["## Set up", "## Train, store, report", "### Is A really better than B?", "## Robustness to corruptions"]


def test_every_readme_section_with_commands_is_run_by_a_test():
    assert sorted(readme.headings_with_commands()) == sorted([*RUN_ELSEWHERE, *RUN_HERE])
    for heading, files in RUN_ELSEWHERE.items():
        for name in files:
            assert heading in (REPO / "tests" / name).read_text(), f"{name} does not read {heading!r}"


def without_download(command: list[str]) -> list[str]:
    return [word for word in command if word != "--download"]


def replace_option(command: list[str], option: str, value) -> list[str]:
    index = command.index(option)
    return [*command[:index + 1], str(value), *command[index + 2:]]


# --- ## Set up ---------------------------------------------------------------------------------------------
def test_the_main_job(tmp_path):
    """The main command on the real digits, cut to 2 epochs of 320 images: what it prints and stores, and a report that pairs
    the two models (test_digits checks that the models learn; the README states the full recipe's figures)."""
    [install], [run, report] = readme.bash_blocks("## Set up")[:1], readme.commands("## Set up")[:2]
    assert install.startswith("python3 -m pip install -e . && vbench run")
    assert run == ["run", "--suite", "digits", "--backbones", "vit-0.5m,vit-0.5m-lkca"] and report == ["report"]
    trained = run_cli(*run, "--epochs", "2", "--limit", "320", cwd=tmp_path)
    assert trained.code == 0, trained.out + trained.err
    first = trained.out.splitlines()[0]
    assert first.startswith("suite digits: 320 train / 320 test images (--limit 320), 2 epochs (0 warm-up epochs)"), first
    assert f"runs are in {tmp_path / 'results' / 'vbench.db'}" in trained.out and "next: vbench report" in trained.out
    runs = open_store(str(tmp_path / "results" / "vbench.db"), write=False).list_runs()
    assert [(r.backbone, r.status) for r in runs] == [("vit-0.5m", "done"), ("vit-0.5m-lkca", "done")]
    table = run_cli(*report, cwd=tmp_path)
    assert table.code == 0, table.err
    gain = runs[1].metrics["top1"] - runs[0].metrics["top1"]
    assert "## digits" in table.out and f"{runs[1].metrics['top1']:.2f} ({gain:+.2f})" in table.out


# --- ## Train, store, report, then compare and robustness on its runs --------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The README's training command on the CIFAR-10 fixture: lkca-t and vit-lite, seeds 0-2."""
    folder = tmp_path_factory.mktemp("readme")
    fixture = write_fixture("cifar10", folder / "data", per_batch=8, num_test=20)
    run, *after = readme.commands("## Train, store, report")
    assert run[:2] == ["run", "--suite"] and "--download" in run
    command = replace_option(without_download(run), "--data-root", fixture.root)
    result = run_cli(*command, "--epochs", "1", "--batch-size", "10", *FAST, cwd=folder)
    assert result.code == 0, result.out + result.err
    return {"folder": folder, "data": fixture.root, "after": after, "db": folder / "results" / "vbench.db"}


def test_train_store_report(trained):
    folder = trained["folder"]
    runs = open_store(str(trained["db"]), write=False).list_runs()
    assert sorted((r.backbone, r.seed, r.status) for r in runs) == [
        (name, seed, "done") for name in ("lkca-t", "vit-lite") for seed in (0, 1, 2)]
    report, plot, listing = trained["after"]
    assert report[:3] == ["report", "--format", "markdown"] and plot == ["plot"] and listing[0] == "runs"
    table = run_cli(*report, cwd=folder)
    assert table.code == 0, table.err
    assert "| ViT/1M " in table.out and "| ViT/1M-LKCA " in table.out and "Paper Acc" in table.out
    drawn = run_cli(*plot, cwd=folder)
    assert drawn.code == 0, drawn.err
    assert (folder / "results" / "plots" / "cifar10_acc_vs_params.png").is_file()
    failed = run_cli(*listing, cwd=folder)
    assert failed.code == 0 and "Runs in" in failed.out and "done" not in failed.out, failed.out + failed.err


def test_compare(trained):
    [command] = readme.commands("### Is A really better than B?")
    result = run_cli(*command, "--format", "json", cwd=trained["folder"])
    assert result.code == 0, result.err
    seeds = next(section for section in json.loads(result.out)["sections"] if section["key"] == "seeds")
    [row] = seeds["rows"]
    assert (row["a"], row["b"], row["seeds_a"], row["seeds_b"]) == ("lkca-t", "vit-lite", [0, 1, 2], [0, 1, 2])


def test_robustness(trained):
    evaluate, report = readme.commands("## Robustness to corruptions")
    assert evaluate[:3] == ["robustness", "--suite", "cifar10"] and report[:2] == ["report", "--robustness"]
    result = run_cli(*evaluate, "--data-root", trained["data"], "--corruptions", "fog,contrast",
                     cwd=trained["folder"])
    assert result.code == 0, result.out + result.err
    table = run_cli(*report, "--format", "csv", cwd=trained["folder"])
    assert table.code == 0, table.err
    rows = {row["backbone"]: row for row in csv.DictReader(io.StringIO(table.out))}
    assert rows.keys() == {"lkca-t", "vit-lite"} and rows["lkca-t"]["reference"] == "vit-lite"
    assert float(rows["lkca-t"]["mce"]) > 0 and all(row["fog"] and row["contrast"] and not row["snow"]
                                                    for row in rows.values())
