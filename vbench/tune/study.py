"""The studies of one tuning command: one Optuna study per backbone, all of one identity, kept in the run store's
own database through Optuna's ``RDBStorage`` (SQLite or PostgreSQL, the store's SQLAlchemy URL).

A group of studies is named by ``--study`` (default: the suite's name); the study of a backbone is
``<group>/<backbone>``. Each study keeps the group's identity as a user attribute: the suite, the backbones,
the search space (and its hash), the sampler, the pruner, the seed, the recipe every trial starts from, the
data, the precision and the metric. A later command must agree with it (or name another ``--study``):
two studies of different spaces or budgets never mix, and every backbone of a group gets the same search.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from vbench.errors import VbenchError
from vbench.recipes import recipe_differences
from vbench.store import display_url, sqlite_file
from vbench.store.connection import read_only_sqlite_engine, reason, with_available_driver
from vbench.tune.space import Space

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "asha", "none")
ATTRIBUTE = "vbench"  # the study's user attribute holding the group's identity
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
SQLITE_TIMEOUT_S = 60  # Optuna's writes wait this long for a SQLite file another process is writing


@dataclass(frozen=True)
class StudyGroup:
    """What every study of a group shares: the equal budget."""

    name: str
    suite: str
    backbones: tuple[str, ...]
    space: Space
    sampler: str
    pruner: str
    seed: int  # the samplers' seed and the seed every trial trains with
    recipe: dict  # the recipe every trial starts from (the suite's, with the command line's changes)
    recipe_hash: str
    data_id: str
    precision: str
    metric: str  # the task's primary metric, the trials' objective
    direction: str  # maximize | minimize

    def study_name(self, backbone: str) -> str:
        return f"{self.name}/{backbone}"

    def identity(self) -> dict:
        return {"suite": self.suite, "backbones": list(self.backbones), "space": self.space.as_dict(),
                "space_hash": self.space.hash, "space_source": self.space.source, "sampler": self.sampler,
                "pruner": self.pruner, "seed": self.seed, "recipe": self.recipe, "recipe_hash": self.recipe_hash,
                "data_id": self.data_id, "precision": self.precision, "metric": self.metric,
                "direction": self.direction}

    def check(self, stored: dict) -> None:
        """One line naming the first way a study of this name differs from this command; None when it agrees."""
        where = f"study {self.name!r}"
        remedy = "or name a new study with --study NAME"
        if stored.get("space_hash") != self.space.hash:
            raise VbenchError(f"{where} was made with another search space (hash {stored.get('space_hash')}, from "
                              f"{stored.get('space_source')}); this one ({self.space.source}) has hash "
                              f"{self.space.hash}: give its --space, {remedy}")
        if stored.get("suite") != self.suite:
            raise VbenchError(f"{where} tunes suite {stored.get('suite')!r}, not {self.suite!r}; {remedy}")
        theirs, ours = list(stored.get("backbones") or []), list(self.backbones)
        missing = [name for name in theirs if name not in ours]
        if missing:
            raise VbenchError(f"{where} tunes {', '.join(theirs)} with one budget; --backbones leaves out "
                              f"{', '.join(missing)}: name them all, {remedy}")
        extra = [name for name in ours if name not in theirs]
        if extra:
            raise VbenchError(f"{where} has no study for {', '.join(extra)} (it tunes {', '.join(theirs)}); name "
                              f"the same backbones, {remedy}")
        if stored.get("recipe_hash") != self.recipe_hash:
            changes = ", ".join(recipe_differences(self.recipe, stored.get("recipe") or {})) or "recipe hash differs"
            raise VbenchError(f"{where} was made with another recipe ({changes}); give the same --epochs and --set "
                              f"options, {remedy}")
        for key, option in (("sampler", "--sampler"), ("pruner", "--pruner"), ("seed", "--seed")):
            if stored.get(key) != getattr(self, key):
                raise VbenchError(f"{where} was made with {option} {stored.get(key)}, not {getattr(self, key)}; "
                                  f"{remedy}")
        for key, what in (("data_id", "data"), ("precision", "precision"), ("metric", "metric")):
            if stored.get(key) != getattr(self, key):
                raise VbenchError(f"{where} was made with other {what} ({stored.get(key)}, now {getattr(self, key)}); "
                                  f"{remedy}")


# --- samplers and pruners ------------------------------------------------------------------------------
def sampler_for(group: StudyGroup, draw: int, budget: int) -> optuna.samplers.BaseSampler:
    """The sampler of a study's ``draw``-th trial, seeded from (seed, draw): every backbone's study draws the same
    random start, and a resumed command draws what an uninterrupted one would from the same history."""
    seed = group.seed * 1_000_003 + draw
    if group.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE's random start: half the budget, 2 to 10 trials (Optuna's 10 would leave 8 trials all random)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, budget // 2)))


def pruner_for(group: StudyGroup, budget: int) -> optuna.pruners.BasePruner:
    """median: a trial whose best value so far is below the median of the complete trials at the same epoch, from
    the second epoch on (the first says little) and once a quarter of the budget (1 to 5 trials) is complete;
    asha: Optuna's asynchronous successive halving (the same rungs whatever the order of the trials)."""
    if group.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, budget // 4)), n_warmup_steps=2)
    if group.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


# --- the storage -----------------------------------------------------------------------------------------
def open_storage(url: str, write: bool = True) -> optuna.storages.RDBStorage:
    """Optuna's storage in the run store's database; ``write=False`` reads only (SQLite opened read-only, no
    table created)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the command prints its own lines
    path = sqlite_file(url)
    if path is not None and not write:
        target, kwargs = f"sqlite:///file:{path}?mode=ro&uri=true", {}
    elif path is not None:
        target, kwargs = f"sqlite:///{path}", {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    else:
        target, kwargs = with_available_driver(url), {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(target, engine_kwargs=kwargs, skip_table_creation=not write)
    except (SQLAlchemyError, RuntimeError, ValueError) as exc:
        raise VbenchError(f"cannot open the studies in {display_url(url)}: {reason(exc)}") from None


def holds_studies(url: str) -> bool:
    """Whether the database at ``url`` has Optuna's tables (read only: nothing is created)."""
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        return False
    engine = read_only_sqlite_engine(path) if path is not None else create_engine(with_available_driver(url))
    try:
        return inspect(engine).has_table("studies")
    except SQLAlchemyError as exc:
        raise VbenchError(f"cannot read the run store {display_url(url)}: {reason(exc)}") from None
    finally:
        engine.dispose()


def stored_groups(url: str) -> dict[str, dict[str, dict]]:
    """``{group: {backbone: identity}}`` of every vbench study in the database (read only)."""
    if not holds_studies(url):
        return {}
    storage = open_storage(url, write=False)
    try:
        groups: dict[str, dict[str, dict]] = {}
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            stored = summary.user_attrs.get(ATTRIBUTE)
            group, _, backbone = summary.study_name.rpartition("/")
            if stored and group:
                groups.setdefault(group, {})[backbone] = stored
        return groups
    finally:
        storage.remove_session()
        storage.engine.dispose()


def check_existing(group: StudyGroup, url: str) -> dict[str, dict]:
    """The group's stored studies, each checked against this command (read only)."""
    stored = stored_groups(url).get(group.name, {})
    for identity in stored.values():
        group.check(identity)
    return stored


def open_studies(group: StudyGroup, url: str, budget: int = 1, storage=None) -> dict[str, optuna.Study]:
    """Every backbone's study, created where missing (with the group's identity), else loaded and checked."""
    storage = storage or open_storage(url, write=True)
    studies = {}
    for backbone in group.backbones:
        study = optuna.create_study(storage=storage, study_name=group.study_name(backbone), direction=group.direction,
                                    pruner=pruner_for(group, budget), load_if_exists=True)
        stored = study.user_attrs.get(ATTRIBUTE)
        if stored is None:
            study.set_user_attr(ATTRIBUTE, group.identity())
        else:
            group.check(stored)
        studies[backbone] = study
    return studies


def load_study(url: str, name: str, storage=None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage or open_storage(url, write=False))


# --- what a study holds ------------------------------------------------------------------------------------
@dataclass
class StudyState:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict | None = None

    @property
    def finished(self) -> int:
        """The trials that count against the budget: complete or pruned."""
        return self.complete + self.pruned


def study_state(study: optuna.Study) -> StudyState:
    state = StudyState()
    states = optuna.trial.TrialState
    for trial in study.get_trials(deepcopy=False):
        state.complete += trial.state == states.COMPLETE
        state.pruned += trial.state == states.PRUNED
        state.failed += trial.state == states.FAIL
        state.running += trial.state == states.RUNNING
    if state.complete:
        best = study.best_trial
        state.best_number, state.best_value, state.best_params = best.number, best.value, dict(best.params)
    return state
