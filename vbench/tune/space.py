"""The search space of a tuning study: a TOML file with a table per recipe key, checked against the suite's recipe.

    [lr]                 # a number: low and high, optionally log = true or step
    low = 1e-4
    high = 1e-2
    log = true

    [warmup_epochs]      # an integer key samples integers
    low = 0
    high = 2

    [optimizer]          # a word (or true/false): the choices
    choices = ["adamw", "sgd"]

Every bound goes through the suite loader's one coercer (``vbench.suites.coerce_dataclass``), so a bound of
the wrong type or outside the key's range (``label_smoothing`` in [0, 1], ``lr`` not negative) is the same
one-line error a suite file gets; both ends of each range must also give a recipe that runs (a warm-up
shorter than the training). The space's canonical JSON is hashed into the study's identity: two studies
with different spaces never mix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vbench.errors import VbenchError
from vbench.recipes import value_text
from vbench.suites import Suite, coerce_dataclass, read_toml

SETTINGS = ("low", "high", "log", "step", "choices")
BUDGET_KEYS = {  # what every trial of every backbone shares: never searched
    "epochs": "the epochs of every trial (--epochs)", "iterations": "the iterations of every trial",
    "seed": "the seed every trial trains with (--seed)",
}
DEFAULT_SPACE_NAME = "the default space"


@dataclass(frozen=True)
class Param:
    """One searched recipe key: a range of numbers (``kind`` int or float) or a list of ``choices``."""

    name: str
    kind: str  # int | float | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None

    def as_dict(self) -> dict:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        spec = {"low": self.low, "high": self.high, "log": self.log}
        return spec if self.step is None else {**spec, "step": self.step}

    def text(self) -> str:
        if self.kind == "choice":
            return f"{self.name} in {{{', '.join(value_text(c) for c in self.choices)}}}"
        scale = " (log)" if self.log else f" (step {value_text(self.step)})" if self.step is not None else ""
        return f"{self.name} {value_text(self.low)}..{value_text(self.high)}{scale}"


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]
    source: str  # the file, or "the default space"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def as_dict(self) -> dict:
        return {p.name: p.as_dict() for p in self.params}

    @property
    def hash(self) -> str:
        """sha256 (16 hex digits) of the canonical JSON of the space: part of a study's identity."""
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def text(self) -> str:
        return ", ".join(p.text() for p in self.params)

    def suggest(self, trial) -> dict:
        """Ask an Optuna trial for a value of every key."""
        values = {}
        for p in self.params:
            if p.kind == "choice":
                values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif p.kind == "int":
                values[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.log)
            else:
                values[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
        return values


def set_assignments(params: dict) -> list[str]:
    """A trial's values as ``--set key=value`` strings (the value written as TOML), in the space's order."""
    return [f"{name}={_toml(value)}" for name, value in params.items()]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    return repr(value)


def params_text(params: dict) -> str:
    return " ".join(f"{name} {value:.3g}" if isinstance(value, float) else f"{name} {value_text(value)}"
                    for name, value in params.items())


# --- reading and checking ------------------------------------------------------------------------------
def default_space(suite: Suite) -> dict:
    """lr and weight decay (log), drop path, warm-up epochs (0 to a quarter of the epochs, from 4 epochs up) and
    label smoothing, for a classification recipe; wide enough to hold the paper's and the built-in suites' values."""
    recipe = suite.recipe
    if suite.task != "classification":
        raise VbenchError(f"the default search space is for classification recipes; suite {suite.name!r} is "
                          f"{suite.task}: give --space FILE with its recipe's keys")
    space = {"lr": {"low": 1e-4, "high": 1e-2, "log": True},
             "weight_decay": {"low": 1e-3, "high": 0.3, "log": True},
             "drop_path": {"low": 0.0, "high": 0.3},
             "warmup_epochs": {"low": 0, "high": recipe.epochs // 4},
             "label_smoothing": {"low": 0.0, "high": 0.2}}
    if recipe.epochs < 4:  # too short for a warm-up: the suite's own value stands
        del space["warmup_epochs"]
    return space


def load_space(path: str | None, suite: Suite) -> Space:
    """The space of ``path`` (the default space when None), checked against ``suite``'s recipe."""
    if path is None:
        return check_space(default_space(suite), suite, DEFAULT_SPACE_NAME)
    file = Path(path).expanduser()
    if not path.strip() or not file.is_file():
        what = "is a folder" if file.is_dir() else "does not exist"
        raise VbenchError(f"--space: search space file {path!r} {what}; give a TOML file (README, "
                          "\"Equal-budget tuning\")")
    return check_space(read_toml(file), suite, str(file))


def check_space(table: dict, suite: Suite, source: str) -> Space:
    if not table:
        raise VbenchError(f"{source}: the search space is empty; give at least one table such as [lr] with low and "
                          "high")
    recipe_class = type(suite.recipe)
    fields = {f.name: f for f in dataclasses.fields(recipe_class)}
    hints = typing.get_type_hints(recipe_class)
    params = []
    for name, spec in table.items():
        if name in BUDGET_KEYS:
            raise VbenchError(f"{source}: [{name}] cannot be searched: it is {BUDGET_KEYS[name]}, the same for "
                              "every trial")
        if name not in fields or fields[name].metadata.get("bookkeeping"):
            known = ", ".join(n for n in fields if n not in BUDGET_KEYS and not fields[n].metadata.get("bookkeeping"))
            raise VbenchError(f"{source}: unknown {suite.task} recipe key {name!r}; searchable keys: {known}")
        if not isinstance(spec, dict):
            raise VbenchError(f"{source}: {name} must be a table ([{name}] with low and high, or choices)")
        params.append(_param(name, spec, hints[name], recipe_class, source))
    space = Space(tuple(params), source)
    for param in space.params:
        _check_ends(param, suite, source)
    return space


def _param(name: str, spec: dict, hint, recipe_class, source: str) -> Param:
    unknown = [key for key in spec if key not in SETTINGS]
    if unknown:
        raise VbenchError(f"{source}: {name}: unknown setting {unknown[0]!r}; give low and high (with log or step), "
                          "or choices")

    def checked(key: str, value):
        """``value`` as the recipe key's type, within its range: the suite loader's own check."""
        recipe = coerce_dataclass({name: value}, recipe_class, lambda _key: f"{source} [{name}] {key}")
        return getattr(recipe, name)

    if "choices" in spec:
        if set(spec) - {"choices"}:
            raise VbenchError(f"{source}: {name}: give either choices or low and high, not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise VbenchError(f"{source}: {name}.choices must be a non-empty list")
        values = tuple(checked("choices", value) for value in choices)
        if len(set(values)) != len(values):
            raise VbenchError(f"{source}: {name}.choices names a value twice")
        return Param(name, "choice", choices=values)
    if hint not in (int, float):
        raise VbenchError(f"{source}: {name} is a {getattr(hint, '__name__', hint)} key: give its choices "
                          f"([{name}] choices = [...]), not a range")
    if "low" not in spec or "high" not in spec:
        raise VbenchError(f"{source}: {name} needs low and high")
    low, high = checked("low", spec["low"]), checked("high", spec["high"])
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise VbenchError(f"{source}: {name}.log must be true or false")
    if low > high:
        raise VbenchError(f"{source}: {name}: low {value_text(low)} is above high {value_text(high)}")
    if step is not None:
        step = checked("step", step)
        if step <= 0 or log:
            raise VbenchError(f"{source}: {name}.step must be positive and cannot be combined with log = true")
    if log and low <= 0:
        raise VbenchError(f"{source}: {name}: a log scale needs low above 0, got {value_text(low)}")
    if hint is float and not (math.isfinite(low) and math.isfinite(high)):
        raise VbenchError(f"{source}: {name}: low and high must be finite numbers")
    return Param(name, "int" if hint is int else "float", low, high, log, step)


def _check_ends(param: Param, suite: Suite, source: str) -> None:
    """Both ends of a range (every choice) must give a recipe that runs, e.g. a warm-up shorter than the epochs."""
    ends = param.choices if param.kind == "choice" else (param.low, param.high)
    for value in ends:
        try:
            suite.with_recipe(**{param.name: value})
        except VbenchError as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise VbenchError(f"{source}: {param.name} = {value_text(value)} gives a recipe that cannot run: "
                              f"{reason}") from None


def check_sets_apart(space: Space, sets: list[str], overrides: dict) -> None:
    """A key the space searches cannot also be fixed by --set or its own flag."""
    fixed = [assignment.partition("=")[0].strip().removeprefix("recipe.") for assignment in sets]
    fixed += [key for key, value in overrides.items() if value is not None]
    for name in space.names:
        if name in fixed:
            raise VbenchError(f"{name} is searched by {space.source} and also set on the command line; leave one "
                              "of them out")
