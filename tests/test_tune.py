"""`vbench tune` (README "## Equal-budget tuning"): every backbone the same search in the run store's database, each
trial a normal run, pruning, the re-runs of the best, the tuned tables kept apart from the fixed recipe's, the
leaderboard's Tuning page, bad input that writes nothing, a command killed mid-trial and given again, and the same
through the SLURM test cluster into PostgreSQL."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import optuna
import pytest
import readme
from cli import REPO, run_cli, start_cli
from plugins import FAST, write_plugin
from services import wait_for

from vbench.data.fixtures import write_fixture
from vbench.engine.plan import execute, plan_run
from vbench.engine.runner import RunOptions, StopRun
from vbench.errors import VbenchError
from vbench.store import open_store
from vbench.suites import load_suite
from vbench.tune.space import check_space, load_space
from vbench.tune.study import open_storage

HEADING = "## Equal-budget tuning"
ENV = {"OMP_NUM_THREADS": "1"}
# the README's digits commands at test size: 64 images, 3 epochs a run (pruning can act after epoch 2), 3 trials
SMALL = {"--trials": "3", "--epochs": "3", "--seeds": "0,1"}
LIMIT = ["--limit", "64"]

PAIR_PLUGIN = '''
import torch.nn as nn
from vbench.models import registry


class Small(nn.Module):
    def __init__(self, num_classes, drop_path_rate):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, stride=2, padding=1)
        self.head = nn.Linear(12, num_classes)

    def forward(self, x):
        return self.head(self.stem(x).relu().mean(dim=(2, 3)))


if "tiny-lkca" in registry.BACKBONES.names():
    registry.unregister_backbone("tiny-lkca")


@registry.register_backbone("tiny-lkca", family="test", paper_names=["Tiny-LKCA"], in_paper=False,
                            accepts=("drop_path_rate",))
def tiny_lkca(img_size=32, num_classes=10, drop_path_rate=0.0):
    """The tiny test net's partner in the tests of tuning (paired as an LKCA model with its ViT)."""
    return Small(num_classes, drop_path_rate)
'''


def with_values(command: list[str], values: dict) -> list[str]:
    """``command`` with the values of the options in ``values`` replaced."""
    command = list(command)
    for option, value in values.items():
        if option in command:
            command[command.index(option) + 1] = str(value)
    return command


def studies(db: str, group: str) -> dict[str, optuna.Study]:
    storage = open_storage(db if "://" in db else f"sqlite:///{db}", write=False)
    names = [name for name in optuna.get_all_study_names(storage) if name.startswith(f"{group}/")]
    return {name.split("/", 1)[1]: optuna.load_study(study_name=name, storage=storage) for name in names}


def finished(study: optuna.Study) -> list:
    return [t for t in study.get_trials() if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def trial_runs(db: str) -> list:
    return [run for run in open_store(db, write=False).list_runs() if "trial" in ((run.settings or {}).get("tune") or {})]


# --- the README's commands on digits --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The README section's digits commands at test size, in a fresh folder: tune, tune --rerun-best, the fixed
    recipe, the report and the leaderboard (the README's space example and SLURM command are run below)."""
    folder = tmp_path_factory.mktemp("tune")
    commands = readme.commands(HEADING)
    tune, rerun, fixed, report, leaderboard = commands[:5]
    assert tune[:2] == ["tune", "--suite"] and "--rerun-best" in rerun and fixed[0] == "run" and report[0] == "report"
    results = {}
    for name, command in (("tune", tune), ("rerun", rerun), ("fixed", [*fixed, "--epochs", "1"])):
        results[name] = run_cli(*with_values(command, SMALL), *LIMIT, env=ENV, cwd=folder)
        assert results[name].code == 0, results[name].out + results[name].err
    return {"folder": folder, "db": str(folder / "results" / "vbench.db"), "results": results, "report": report,
            "leaderboard": leaderboard, "tune": with_values(tune, SMALL) + LIMIT}


def test_every_backbone_gets_the_same_budget_and_each_trial_is_a_run(tuned):
    db = tuned["db"]
    found = studies(db, "digits")
    assert sorted(found) == ["vit-0.5m", "vit-0.5m-lkca"]
    identities = [study.user_attrs["vbench"] for study in found.values()]
    assert identities[0] == identities[1] and identities[0]["sampler"] == "tpe" and identities[0]["seed"] == 0
    assert sorted(identities[0]["space"]) == ["drop_path", "label_smoothing", "lr", "weight_decay"]  # 3 epochs: no warm-up
    for study in found.values():
        assert len(finished(study)) == 3
    firsts = [sorted(study.get_trials(), key=lambda t: t.number)[0].params for study in found.values()]
    assert firsts[0] == firsts[1]  # the same seeded first draw for every backbone

    runs = trial_runs(db)
    assert len(runs) == 6 and len({run.recipe_hash for run in runs}) == 6  # a run key of its own for each trial
    recipe_hash = load_suite("digits", overrides={"epochs": 3}).recipe.key_hash()
    for backbone, study in found.items():
        for trial in finished(study):
            [run] = [r for r in runs if r.backbone == backbone and r.settings["tune"]["trial"] == trial.number]
            assert run.settings["tune"]["params"] == trial.params and run.recipe_hash != recipe_hash
            if trial.state == optuna.trial.TrialState.COMPLETE:
                assert run.status == "done" and run.metrics["top1"] == pytest.approx(trial.value)
            else:  # pruned after epoch 2, its steps kept
                assert run.status == "pruned" and run.steps_done == 2 and "pruned by the median pruner" in run.error
    assert "trial 0 of digits" in run_cli("runs", cwd=tuned["folder"]).out


def test_given_again_it_runs_nothing_and_re_runs_the_best(tuned):
    rerun = tuned["results"]["rerun"]
    assert "(1 of 3)" not in rerun.out and "re-running trial" in rerun.out
    runs = open_store(tuned["db"], write=False).list_runs()
    reruns = [run for run in runs if "rerun_of" in ((run.settings or {}).get("tune") or {})]
    assert sorted((run.backbone, run.seed, run.status) for run in reruns) == [
        (name, seed, "done") for name in ("vit-0.5m", "vit-0.5m-lkca") for seed in (0, 1)]
    for study in studies(tuned["db"], "digits").values():
        best = study.best_trial
        [mine] = {run.settings["tune"]["rerun_of"] for run in reruns if run.backbone == study.study_name.split("/")[1]}
        assert mine == best.number
        assert all(run.recipe[key] == pytest.approx(value) for run in reruns if run.settings["tune"]["rerun_of"] == mine
                   for key, value in best.params.items())


def test_report_keeps_tuning_apart(tuned):
    report = run_cli(*tuned["report"], "--format", "json", cwd=tuned["folder"])
    assert report.code == 0, report.err
    sections = {section["key"]: section for section in json.loads(report.out)["sections"]}
    runs = open_store(tuned["db"], write=False).list_runs()
    fixed_ids = {run.id for run in runs if not (run.settings or {}).get("tune")}
    fixed = {row["backbone"]: row for row in sections["digits"]["rows"]}
    assert {b: (row["n"], set(row["run_ids"]) <= fixed_ids) for b, row in fixed.items()} == {
        "vit-0.5m": (2, True), "vit-0.5m-lkca": (2, True)}
    tuned_rows = {row["backbone"]: row for row in sections["digits/tuned/digits"]["rows"]}
    assert {b: (row["trials"], row["n"]) for b, row in tuned_rows.items()} == {"vit-0.5m": (3, 2), "vit-0.5m-lkca": (3, 2)}
    lkca, vit = tuned_rows["vit-0.5m-lkca"], tuned_rows["vit-0.5m"]
    assert lkca["partner"] == "vit-0.5m" and lkca["gain"] == pytest.approx(lkca["acc_mean"] - vit["acc_mean"])
    assert lkca["fixed_gain"] == pytest.approx(fixed["vit-0.5m-lkca"]["acc_mean"] - fixed["vit-0.5m"]["acc_mean"])
    assert vit["acc_ci_low"] <= vit["acc_mean"] <= vit["acc_ci_high"]
    text = run_cli(*tuned["report"], cwd=tuned["folder"]).out
    assert text.index("## digits\n") < text.index("## digits: tuned, equal budgets (study digits)")


def test_leaderboard_tuning_page(tuned):
    result = run_cli(*tuned["leaderboard"], cwd=tuned["folder"])
    assert result.code == 0, result.err
    page = (tuned["folder"] / "results" / "leaderboard" / "tuning.html").read_text()
    for backbone in ("vit-0-5m", "vit-0-5m-lkca"):
        for chart in ("history", "importance"):
            spec = re.search(rf'id="tuning-digits-tuned-digits-{backbone}-{chart}-spec">(.*?)</script>', page, re.S)
            title = json.loads(spec.group(1))["layout"]["title"]["text"]
            assert title.endswith("optimisation history") if chart == "history" else "parameter importances (" in title
    history = json.loads(re.search(r'id="tuning-digits-tuned-digits-vit-0-5m-history-spec">(.*?)</script>', page,
                                   re.S).group(1))
    assert sum(len(trace["x"]) for trace in history["data"] if trace["name"] in ("complete", "pruned")) == 3


def test_the_commands_over_finished_runs_leave_tuning_runs_out(tuned):
    """Trials and re-runs are no fixed-recipe results: `vbench calibration` (as robustness, deploy, erf and
    shape-bias) measures the fixed-recipe runs alone."""
    result = run_cli("calibration", "--suite", "digits", *LIMIT, cwd=tuned["folder"])
    assert result.code == 0, result.out + result.err
    store = open_store(tuned["db"], write=False)
    fixed = {run.id for run in store.list_runs() if not (run.settings or {}).get("tune")}
    assert len(fixed) == 4 and {e.run_id for e in store.evaluations("calibration")} == fixed


def test_bad_input_on_resume_writes_nothing(tuned, tmp_path):
    """Another space, a backbone left out or added, another recipe: one line, exit 2, the studies untouched."""
    folder, command = tuned["folder"], tuned["tune"]
    before = {name: len(study.get_trials()) for name, study in studies(tuned["db"], "digits").items()}
    runs_before = len(open_store(tuned["db"], write=False).list_runs())
    space = tmp_path / "space.toml"
    space.write_text("[lr]\nlow = 1e-4\nhigh = 1e-3\nlog = true\n")
    cases = {
        "another search space": [*command, "--space", space],
        "--backbones leaves out vit-0.5m-lkca": with_values(command, {"--backbones": "vit-0.5m"}),
        "has no study for vit-2m": with_values(command, {"--backbones": "vit-0.5m,vit-0.5m-lkca,vit-2m"}),
        "another recipe (epochs 2 instead of 3)": with_values(command, {"--epochs": "2"}),
        "--sampler tpe, not random": [*command, "--sampler", "random"],
    }
    for expected, args in cases.items():
        result = run_cli(*args, env=ENV, cwd=folder)
        assert result.code == 2 and expected in result.error_line, (expected, result.err)
    assert {name: len(study.get_trials()) for name, study in studies(tuned["db"], "digits").items()} == before
    assert len(open_store(tuned["db"], write=False).list_runs()) == runs_before


# --- bad input before anything exists -----------------------------------------------------------------------------
@pytest.mark.parametrize("space, expected", [
    ("", "the search space is empty"),
    ("[lrr]\nlow = 1\nhigh = 2\n", "unknown classification recipe key 'lrr'"),
    ("[label_smoothing]\nlow = 0.0\nhigh = 1.5\n", "[label_smoothing] high: key 'label_smoothing' must lie in [0, 1]"),
    ("[warmup_epochs]\nlow = 0.5\nhigh = 2\n", "[warmup_epochs] low: key 'warmup_epochs' must be an integer"),
    ("[lr]\nlow = 0.0\nhigh = 0.1\nlog = true\n", "lr: a log scale needs low above 0"),
    ("[epochs]\nlow = 1\nhigh = 4\n", "[epochs] cannot be searched"),
    ("[optimizer]\nlow = 1\nhigh = 2\n", "optimizer is a str key: give its choices"),
    ("[optimizer]\nchoices = [\"adamw\", \"lion\"]\n", "must be one of adamw, adam, sgd"),
    ("[warmup_epochs]\nlow = 0\nhigh = 8\n", "warmup_epochs = 8 gives a recipe that cannot run"),
    ("[lr]\nlow = 1e-2\nhigh = 1e-3\n", "lr: low 0.01 is above high 0.001"),
    ("[lr]\nlo = 1e-3\n", "lr: unknown setting 'lo'"),
])
def test_a_bad_space_is_one_line_and_writes_nothing(tmp_path, space, expected):
    file = tmp_path / "space.toml"
    file.write_text(space)
    result = run_cli("tune", "--suite", "digits", "--backbones", "vit-0.5m", "--trials", "2", "--epochs", "8",
                     "--space", file, "--limit", "32", cwd=tmp_path)
    assert result.code == 2 and expected in result.error_line and str(file) in result.error_line, result.err
    assert not (tmp_path / "results").exists()


def test_bad_options_are_one_line_and_write_nothing(tmp_path):
    base = ["tune", "--suite", "digits", "--backbones", "vit-0.5m", "--limit", "32"]
    cases = {
        "--trials must be at least 1, got 0": [*base, "--trials", "0"],
        "unknown --pruner 'hyperband'": [*base, "--trials", "2", "--pruner", "hyperband"],
        "unknown --sampler 'grid'": [*base, "--trials", "2", "--sampler", "grid"],
        "--seeds are the seeds of the re-runs": [*base, "--trials", "2", "--seeds", "0,1"],
        "lr is searched by the default space": [*base, "--trials", "2", "--set", "lr=1e-3"],
        "--seeds '0,,1' has an empty item": [*base, "--trials", "2", "--rerun-best", "--seeds", "0,,1"],
        "options need --launcher slurm": [*base, "--trials", "2", "--slurm-partition", "debug"],
        "--launcher slurm needs": [*base, "--trials", "2", "--launcher", "slurm"],  # a database server, or SLURM
    }
    for expected, args in cases.items():
        result = run_cli(*args, cwd=tmp_path)
        assert result.code == 2 and expected in result.error_line, (expected, result.err)
    assert not (tmp_path / "results").exists()


def test_the_space_is_checked_and_hashed():
    suite = load_suite("digits")
    space = load_space(None, suite)
    assert space.names == ["lr", "weight_decay", "drop_path", "warmup_epochs", "label_smoothing"]
    assert [(p.low, p.high) for p in space.params if p.name == "warmup_epochs"] == [(0, 2)]  # a quarter of 8 epochs
    same = check_space(space.as_dict(), suite, "again")
    assert same.hash == space.hash and len(space.hash) == 16
    other = check_space({**space.as_dict(), "lr": {"low": 1e-4, "high": 1e-2, "log": False}}, suite, "other")
    assert other.hash != space.hash
    with pytest.raises(VbenchError, match="default search space is for classification"):
        load_space(None, load_suite("ade20k"))


# --- the Runner's side: a run an observer stops is recorded as pruned -------------------------------------------
def test_a_run_an_observer_stops_is_recorded_as_pruned(tmp_path):
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    run_cli("list", "backbones", "--plugin", write_plugin(tmp_path))  # registers the tiny backbones

    def stop_after_first(run_id, job, stage, row):
        raise StopRun(f"stopped after epoch {stage.label}")

    planned = plan_run("cifar10", "tiny-test", "0", db=str(tmp_path / "s.db"), sets=["repeats=1", "autoaugment=none"],
                       overrides={"epochs": 3, "batch_size": 10}, options=RunOptions(data_root=fixture.root))
    planned.runner.observers.append(stop_after_first)
    [outcome] = execute(planned).outcomes
    [run] = open_store(str(tmp_path / "s.db"), write=False).list_runs()
    assert (outcome.status, run.status, run.steps_done, run.error) == ("pruned", "pruned", 1, "stopped after epoch 1")


# --- killed mid-trial, given again -------------------------------------------------------------------------------
def test_killed_mid_trial_and_given_again_finishes_the_budget_once(tmp_path):
    """The command is killed (SIGKILL) in its first trial's second epoch; given again, it carries that trial's run
    on from its checkpoint and ends with exactly 2 finished trials per backbone, each trained once."""
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    pair = tmp_path / "pair.py"
    pair.write_text(PAIR_PLUGIN)
    db = str(tmp_path / "tune.db")
    command = ["tune", "--suite", "cifar10", "--plugin", write_plugin(tmp_path), "--plugin", pair, "--data-root",
               fixture.root, "--batch-size", "10", *FAST, "--backbones", "tiny-test,tiny-lkca", "--trials", "2",
               "--epochs", "3", "--db", db]
    flag = tmp_path / "hang"
    process = start_cli(*command, env={**ENV, "VBENCH_TEST_HANG_AFTER": "5", "VBENCH_TEST_HANG_FLAG": flag},
                        cwd=tmp_path)
    try:
        wait_for(flag.exists, 120, "the first trial to reach its second epoch")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    [killed] = trial_runs(db)
    assert (killed.backbone, killed.status, killed.steps_done) == ("tiny-test", "running", 1)

    again = run_cli(*command, env=ENV, cwd=tmp_path)
    assert again.code == 0, again.out + again.err
    assert "(carries on trial 0's run)" in again.out and f"resuming run {killed.id} from its checkpoint" in again.out
    found = studies(db, "cifar10")
    runs = trial_runs(db)
    for backbone, study in found.items():
        counted = finished(study)
        assert len(counted) == 2
        mine = [run for run in runs if run.backbone == backbone]
        assert sorted(run.settings["tune"]["trial"] for run in mine) == sorted(t.number for t in counted)
    states = [t.state for t in found["tiny-test"].get_trials()]
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the killed trial, carried on by the next
    assert [run.id for run in runs if run.backbone == "tiny-test"][0] == killed.id
    store = open_store(db, write=False)
    assert [s.step for s in store.steps(killed.id)] == [1, 2, 3] and store.get_run(killed.id).status == "done"


# --- SLURM into PostgreSQL ------------------------------------------------------------------------------------------
def test_readme_space_example(tuned):
    """The README's space file and its command, at test size (the random sampler, ASHA, another study)."""
    [toml] = re.findall(r"```toml\n(.*?)```", readme.section(HEADING), re.S)
    (tuned["folder"] / "space.toml").write_text(toml)
    [command] = [c for c in readme.commands(HEADING) if "--space" in c]
    result = run_cli(*with_values(command, {"--trials": "1", "--epochs": "1"}), *LIMIT, env=ENV, cwd=tuned["folder"])
    assert result.code == 0, result.out + result.err
    found = studies(tuned["db"], "digits-random")
    assert sorted(found) == ["vit-0.5m", "vit-0.5m-lkca"]
    for study in found.values():
        identity = study.user_attrs["vbench"]
        assert identity["space"]["optimizer"] == {"choices": ["adamw", "sgd"]}
        assert (identity["sampler"], identity["pruner"], identity["seed"]) == ("random", "asha", 1)
        assert len(finished(study)) == 1


def test_tuning_on_slurm_into_postgres(slurm_cluster, fresh_database, tmp_path):
    """The README's SLURM command with this cluster's stand-ins: two backbones, two trials each as four tasks of
    one array sharing the studies in PostgreSQL, then the best of each re-run as a normal sweep."""
    fixture = write_fixture("cifar10", tmp_path / "data", per_batch=8, num_test=20)
    pair = tmp_path / "pair.py"
    pair.write_text(PAIR_PLUGIN)
    [command] = [c for c in readme.commands(HEADING) if "--launcher" in c]
    command = with_values(command, {"--data-root": fixture.root, "--db": fresh_database, "--slurm-partition": "debug",
                                    "--slurm-gpus-per-job": "0", "--max-parallel": "2", "--trials": "2",
                                    "--epochs": "1", "--seeds": "0", "--backbones": "tiny-test,tiny-lkca"})
    result = run_cli(*command, "--plugin", write_plugin(tmp_path), "--plugin", pair, "--batch-size", "10", *FAST,
                     "--slurm-time", "10", env=ENV, cwd=tmp_path)
    assert result.code == 0, result.out + result.err
    assert re.search(r"submitted 4 trials \(tiny-test 2, tiny-lkca 2\) as SLURM job \d+", result.out)
    found = studies(fresh_database, "cifar10")
    assert {name: len(finished(study)) for name, study in found.items()} == {"tiny-test": 2, "tiny-lkca": 2}
    runs = open_store(fresh_database, write=False).list_runs()
    trials = [run for run in runs if "trial" in run.settings["tune"]]
    assert len(trials) == 4 and all(run.launch["launcher"] == "slurm" and run.status in ("done", "pruned")
                                    for run in trials)
    assert len({run.launch["array_job_id"] for run in trials}) == 1
    reruns = [run for run in runs if "rerun_of" in run.settings["tune"]]
    assert sorted((run.backbone, run.seed, run.status) for run in reruns) == [("tiny-lkca", 0, "done"),
                                                                            ("tiny-test", 0, "done")]
    again = run_cli(*command, "--plugin", write_plugin(tmp_path), "--plugin", pair, "--batch-size", "10", *FAST,
                    "--slurm-time", "10", env=ENV, cwd=tmp_path)
    assert again.code == 0 and "nothing to submit: every study has its trials" in again.out, again.out + again.err
    assert len(open_store(fresh_database, write=False).list_runs()) == len(runs)


def test_the_readme_section_is_run_here():
    assert HEADING in (REPO / "tests" / "test_readme.py").read_text()
    assert len(readme.commands(HEADING)) == 7
    assert Path(__file__).name == "test_tune.py"
