"""Every option of every command, tried with the values a careless or hostile user gives: empty, non-finite, huge,
negative and wrong-typed values, and for path options a missing folder, a file, a folder, /proc and a read-only
place. Each case must end as a run that is fine (exit 0) or as one line and exit code 2 naming the option or the
value, never a traceback, and must write nothing. The count of cases is printed (pytest -s shows it)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from cli import run_cli

from vbench.cli import app

# the arguments that make each command valid and quick (failing late, after every option is read, where the
# command would do long work), so that a case is about the option it changes
BASE = {
    ("run",): ["--suite", "digits", "--backbones", "vit-0.5m", "--dry-run", "--db", "{db}"],
    ("eval",): ["--suite", "digits", "--backbones", "vit-0.5m", "--checkpoint", "{weights}", "--db", "{db}"],
    ("info",): ["vit-0.5m", "--img", "8", "--classes", "3"],
    ("compare",): ["vit-0.5m-lkca", "vit-0.5m", "--suite", "digits", "--db", "{db}"],
    ("robustness",): ["--suite", "digits", "--db", "{db}"],
    ("erf",): ["--suite", "digits", "--db", "{db}"],
    ("shape-bias",): ["--suite", "digits", "--db", "{db}"],
    ("calibration",): ["--suite", "digits", "--db", "{db}"],
    ("deploy",): ["--suite", "digits", "--db", "{db}"],
    ("data", "shards"): ["cifar10", "--output", "{sandbox}/no-such-folder/shards", "--data-root", "{sandbox}/no-data"],
    ("tune",): ["--suite", "digits", "--backbones", "vit-0.5m", "--trials", "2", "--dry-run", "--db", "{db}"],
    ("runs", "show"): ["1", "--db", "{db}"],
    ("runs", "rm"): ["1", "--db", "{db}"],
    ("runs", "export"): ["1", "--output", "{sandbox}/export", "--db", "{db}"],
}
SKIPPED = {("bench",): "its options are the benchmark scripts' own (argparse; one line each, tested apart)"}
NUMBERS = ["", "abc", "nan", "inf", "-1", "99999999999999999999"]
TEXTS = ["", ","]
PATHS = ["", "{missing}", "{file}", "{folder}", "/proc/vbench-walk", "{read_only}"]
# what each path option is, by command where it differs: an output file or folder, or an input file or folder
ROLES = {"--db": "output-file", "--data-root": "input-folder", "--output": "output-folder", "--output-dir": "output-folder",
         "--results-file": "output-file", "--tensorboard": "output-folder", "--checkpoint": "input-file",
         "--plugin": "input-file", "--stimuli": "input-folder", "--space": "input-file"}
ROLES_BY_COMMAND = {(("report",), "--output"): "output-file"}
# the values that are wrong for each role, which must be refused naming the option or the value
WRONG = {"output-file": {"", "{folder}", "/proc/vbench-walk", "{read_only}"},
         "output-folder": {"{file}", "/proc/vbench-walk", "{read_only}"},
         "input-file": {"", "{missing}", "{folder}", "/proc/vbench-walk", "{read_only}"},
         "input-folder": {"{missing}", "{file}", "/proc/vbench-walk", "{read_only}"}}
WRONG_NUMBERS = {"abc", "nan", "inf", "-1", "99999999999999999999"}
# where a value that looks wrong is right: these options are not read by the quick base, or take it
UNREAD = {"--data-root": "the digits suite of the bases is bundled with scikit-learn: no data root is read",
          "--db": "a reading command's --db must exist (a missing one is refused, but the store is read, not written)"}
NOT_WALKED = {"--help", "--debug", "--version", "--device", "--slurm-setup", "--slurm-option"}  # --slurm-*: sbatch's


@dataclass(frozen=True)
class Case:
    command: tuple[str, ...]
    option: str
    value: str

    @property
    def id(self) -> str:
        return f"{' '.join(self.command)} {self.option}={self.value!r}"


def command_tree(group, prefix: tuple[str, ...] = ()) -> dict:
    """Every command of the app by its words (typer may vendor its own click: the classes are duck-typed)."""
    if hasattr(group, "commands"):
        found = {}
        for name, sub in group.commands.items():
            found.update(command_tree(sub, (*prefix, name)))
        return found
    return {prefix: group}


def _is_option(param) -> bool:
    return param.param_type_name == "option"


def _numeric(param) -> bool:
    """An int or float option (click's parameter types, or typer's own where it keeps the annotation)."""
    kind = getattr(getattr(param, "type", None), "name", None)
    if kind is not None:
        return kind in ("integer", "float")
    return getattr(param, "bare_type", lambda: None)() in (int, float)


def cases() -> list[Case]:
    found = []
    for command, click_command in command_tree(typer.main.get_command(app)).items():
        if command in SKIPPED:
            continue
        for param in click_command.params:
            if not _is_option(param) or param.is_flag or param.opts[0] in NOT_WALKED:
                continue
            option = param.opts[0]
            if option in ROLES:
                values = PATHS
            elif _numeric(param):
                values = NUMBERS
            else:
                values = TEXTS
            found += [Case(command, option, value) for value in values]
    return found


CASES = cases()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("walk")
    (root / "a-file").write_text("a file")
    (root / "a-folder").mkdir()
    read_only = root / "read-only"
    read_only.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(read_only)],
                             capture_output=True).returncode == 0
    from vbench.models.registry import create_backbone
    from vbench.store import open_store
    from vbench.store.artifacts import save_weights

    open_store(str(root / "runs.db")).close()
    # weights of another head: `vbench eval` reads every option, loads the data and builds the model, then refuses
    # them, so that no case evaluates (seconds) or records a run
    save_weights(root / "weights.safetensors", create_backbone("vit-0.5m", img_size=8, num_classes=3))
    yield {"root": root, "read_only": str(read_only if mounted else "/sys/vbench-walk")}
    if mounted:
        subprocess.run(["umount", str(read_only)], check=False)


def snapshot(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")
                  if p.is_file() and "-wal" not in p.name and "-shm" not in p.name)


def arguments(case: Case, sandbox: dict) -> list[str]:
    root = sandbox["root"]
    fill = {"db": str(root / "runs.db"), "weights": str(root / "weights.safetensors"), "sandbox": str(root),
            "missing": str(root / "no-such-folder" / "x"), "file": str(root / "a-file"),
            "folder": str(root / "a-folder"), "read_only": f"{sandbox['read_only']}/x"}
    base = [item.format(**fill) for item in BASE.get(case.command, ["--db", "{db}"] if _takes_db(case.command) else [])]
    value = case.value.format(**fill)
    if case.option in base:
        index = base.index(case.option)
        return [*case.command, *base[:index + 1], value, *base[index + 2:]]
    return [*case.command, *base, case.option, value]


def _takes_db(command: tuple[str, ...]) -> bool:
    click_command = command_tree(typer.main.get_command(app))[command]
    return any(_is_option(p) and "--db" in p.opts for p in click_command.params)



def test_the_walk_covers_every_command_and_counts_its_cases(capsys):
    commands = set(command_tree(typer.main.get_command(app))) - set(SKIPPED)
    with_options = {command for command, click_command in command_tree(typer.main.get_command(app)).items()
                    if any(_is_option(p) and not p.is_flag and p.opts[0] not in NOT_WALKED for p in click_command.params)}
    assert {case.command for case in CASES} == with_options - set(SKIPPED)
    with capsys.disabled():
        print(f"\nbad-input walk: {len(CASES)} cases over {len(commands)} commands "
              f"({sum(c.option in ROLES for c in CASES)} path cases)")
    assert len(CASES) > 200


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_a_bad_value_is_one_line_exit_2_and_writes_nothing(case, sandbox):
    before = snapshot(sandbox["root"])
    result = run_cli(*arguments(case, sandbox), cwd=sandbox["root"])
    assert "Traceback" not in result.out + result.err, result.err
    assert result.code in (0, 2), f"exit {result.code}: {result.out[-500:]} {result.err}"
    if result.code == 2:
        assert snapshot(sandbox["root"]) == before, "a command refusing its input wrote something"
    line = result.error_line if result.code == 2 else ""
    assert result.code == 0 or line.startswith("error: "), line
    if must_refuse(case):
        value = case.value.format(missing="no-such-folder", file="a-file", folder="a-folder", read_only="x")
        assert result.code == 2, f"accepted: {result.out[-300:]}"
        assert case.option in line or (value and value in line), line


def must_refuse(case: Case) -> bool:
    """Whether ``case.value`` is wrong for its option whatever else the command is given."""
    if case.option in ROLES:
        role = ROLES_BY_COMMAND.get((case.command, case.option), ROLES[case.option])
        return case.option not in UNREAD and case.value in WRONG[role]
    return case.value in WRONG_NUMBERS
