"""A group's trials, each one normal vbench run through the one Runner (``plan_run`` / ``execute``): the same
checkpoints, leases and store rows as ``vbench run``.

A trial's run is marked in its settings (``settings.tune``: the study, the trial number, the values) and its
run key is salted with the trial's own salt (``RunOptions.key_salt``), so a trial is never the same experiment as
a fixed-recipe run, nor as another trial. After each evaluated epoch an observer reports the primary metric to
the trial and asks the pruner; a pruned trial's run ends early (``StopRun``) and is recorded as ``pruned``.

Resuming: the budget counts finished (complete or pruned) trials. A trial left running by a process that is
gone is told failed, and a trial of the same values and salt is queued in its place (``enqueue_trial``), so
the next trial asked carries on the very same run from its checkpoint: it is never trained twice nor counted
twice. A trial whose run ended while nobody was there to tell the study is told from its run row. Trials are
asked round-robin over the backbones, so an interrupted command leaves every study about as far along.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import optuna
from rich.console import Console

from vbench.engine.plan import RunResult, execute, plan_run
from vbench.engine.runner import StopRun
from vbench.errors import VbenchError
from vbench.slurm.queue import job_alive, job_states, release_dead_holders
from vbench.store import holder_alive, open_store, tune_marks, utcnow
from vbench.tune.plan import TuneRequest
from vbench.tune.space import params_text, set_assignments
from vbench.tune.study import FINISHED, StudyState, open_studies, sampler_for, study_state

TrialState = optuna.trial.TrialState
RUN_ENDED = ("done", "pruned", "failed")  # a run in one of these states settles its trial
ASKING_GRACE = timedelta(seconds=60)  # a trial this young without its holder's name is still being set up


@dataclass
class Picked:
    """The trial a process is about to train."""

    trial: optuna.Trial
    params: dict
    salt: str
    finished: int  # the study's finished trials when it was asked
    continues: int | None  # the number of the interrupted trial whose run it carries on


@dataclass
class TrialResult:
    backbone: str
    number: int
    status: str  # complete | pruned | failed | busy
    params: dict
    value: float | None = None
    run_id: int | None = None
    error: str | None = None
    continues: int | None = None
    wall_s: float = 0.0  # the whole trial: planning, training, bookkeeping
    optuna_s: float = 0.0  # of which Optuna's calls (ask, suggest, report, should_prune, tell, reading trials)


@dataclass
class TuneOutcome:
    results: list[TrialResult] = field(default_factory=list)
    states: dict[str, StudyState] = field(default_factory=dict)
    gave_up: dict[str, str] = field(default_factory=dict)  # backbone -> why it stopped short of its budget

    def complete(self, budget: int) -> bool:
        return all(state.finished >= budget for state in self.states.values())


class Session:
    """One process's part in a group's tuning: its studies, the run store and its name as a trial holder."""

    def __init__(self, request: TuneRequest, console: Console | None = None, job_id: str | None = None,
                 launch: dict | None = None):
        self.request, self.group = request, request.group
        self.console = console or Console()
        self.job_id, self.launch = job_id, launch
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.optuna_s = 0.0
        self.store = open_store(request.url, write=True)  # first: it creates the database and its folder
        try:
            with self.timed():
                self.studies = open_studies(self.group, request.url, request.trials)
        except BaseException:
            self.store.close()
            raise

    def close(self) -> None:
        self.store.close()

    @contextmanager
    def timed(self):
        """Count the time spent in Optuna (the benchmark's overhead)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.optuna_s += time.perf_counter() - started

    def trial_runs(self, backbone: str) -> dict[int, object]:
        """The newest run of each trial of ``backbone``'s study, by trial number."""
        runs = {}
        for run in self.store.list_runs(suite=self.group.suite, backbones=[backbone]):
            marks = tune_marks(run)
            if marks.get("study") == self.group.name and "trial" in marks:
                runs[marks["trial"]] = run
        return runs

    def trials(self, backbone: str) -> list[optuna.trial.FrozenTrial]:
        with self.timed():
            return self.studies[backbone].get_trials(deepcopy=False)


# --- which trial next -----------------------------------------------------------------------------------------
def open_trials(session: Session, backbone: str) -> tuple[int, int]:
    """Settle what can be settled, hand on what was left behind; (finished, held by live processes)."""
    study = session.studies[backbone]
    runs = session.trial_runs(backbone)
    trials = session.trials(backbone)
    stale = [t for t in trials if t.state == TrialState.RUNNING and getattr(runs.get(t.number), "status", None)
             in RUN_ENDED]
    for trial in stale:
        settle_from_run(session, study, trial, runs[trial.number])
    if stale:
        trials = session.trials(backbone)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    states = job_states(t.user_attrs.get("job_id") for t in running)
    live = 0
    for trial in running:
        if holder_alive_for(session, trial, runs.get(trial.number), states):
            live += 1
        else:
            carry_on(session, study, trial)
    return sum(t.state in FINISHED for t in trials), live


def next_trial(session: Session, backbone: str) -> Picked | None:
    """The trial to train next for ``backbone``, or None when its study has (or will have) its budget."""
    finished, live = open_trials(session, backbone)
    if finished + live >= session.request.trials:
        return None
    study = session.studies[backbone]
    with session.timed():
        trial = study.ask()
        # drawn by a sampler seeded from (seed, draw), set between asking and drawing (Optuna draws each value in
        # suggest_*); the draw counts the trials before it that drew (not those carrying on a run): every backbone's
        # k-th draw is seeded alike, even from parallel SLURM jobs and after interruptions
        draw = sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and "continues" not in
                   t.user_attrs)
        study.sampler = sampler_for(session.group, draw, session.request.trials)
        trial.set_user_attr("owner", session.owner)
        if session.job_id:
            trial.set_user_attr("job_id", session.job_id)
        salt = trial.user_attrs.get("salt")
        if salt is None:
            salt = uuid.uuid4().hex[:16]
            trial.set_user_attr("salt", salt)
        params = session.group.space.suggest(trial)
    return Picked(trial, params, salt, finished, trial.user_attrs.get("continues"))


def holder_alive_for(session: Session, trial, run, states: dict) -> bool:
    """Whether something alive still holds a running trial: its SLURM job, the process training its run, or the
    process that asked it (on this host: it exists; elsewhere: the trial is younger than a run's lease)."""
    job_id = trial.user_attrs.get("job_id")
    if job_id:
        return job_id != session.job_id and job_alive(job_id, states)  # this job, requeued: its old self is gone
    if run is not None and run.status == "running" and run.owner:
        return holder_alive(run.owner, run.heartbeat_at, utcnow())  # the store's clock: naive UTC
    owner = trial.user_attrs.get("owner")
    if owner:
        return owner != session.owner and holder_alive(owner, trial.datetime_start, datetime.now())  # Optuna's: local
    return trial.datetime_start is not None and datetime.now() - trial.datetime_start < ASKING_GRACE


def settle_from_run(session: Session, study: optuna.Study, trial, run) -> None:
    """Tell the study how a trial ended whose process stopped before telling it: from its run row."""
    value = run.metric(session.group.metric)
    with session.timed():
        try:
            if run.status == "done" and value is not None:
                study.tell(trial.number, value)
            elif run.status == "pruned":
                study.tell(trial.number, state=TrialState.PRUNED)
            else:
                study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another process told it first
            pass


def carry_on(session: Session, study: optuna.Study, trial) -> None:
    """A trial whose holder is gone: told failed, and its values and salt queued as a new trial, which carries on
    its run from the checkpoint (never counted twice: the failed one does not count)."""
    with session.timed():
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another process got there first and queued it
            return
        if set(trial.params) == set(session.group.space.names):  # all its values were drawn: its run may exist
            study.enqueue_trial(dict(trial.params), user_attrs={
                "salt": trial.user_attrs.get("salt") or uuid.uuid4().hex[:16], "continues": trial.number})


# --- training a trial -------------------------------------------------------------------------------------------
class PruningObserver:
    """Reports the primary metric of every evaluated epoch to the trial and stops a run its pruner prunes (never
    after the last epoch: that run is complete)."""

    def __init__(self, session: Session, trial: optuna.Trial, runner):
        self.session, self.trial = session, trial
        info = runner.suite.task_info
        self.metric, self.unit, self.last = info.primary_metric, info.step_unit, runner.stages[-1].label

    def __call__(self, run_id, job, stage, row) -> None:
        value = row.get(self.metric.name)
        if not isinstance(value, (int, float)):
            return
        with self.session.timed():
            self.trial.report(float(value), stage.label)
            prune = stage.label != self.last and self.trial.should_prune()
        if prune:
            raise StopRun(f"pruned by the {self.session.group.pruner} pruner after {self.unit} {stage.label} "
                          f"({self.metric.label} {value:.2f})")


def run_trial(session: Session, backbone: str, picked: Picked) -> TrialResult:
    """Train the picked trial as a normal run and tell its study how it ended. Ctrl-C leaves the trial running:
    the same command carries it on."""
    request, group, trial = session.request, session.group, picked.trial
    marks = {"tune": {"study": group.name, "trial": trial.number, "params": picked.params,
                      "space_hash": group.space.hash, "sampler": group.sampler, "pruner": group.pruner}}
    options = replace(request.options, marks=marks, key_salt=picked.salt, launch=session.launch)
    planned = plan_run(request.suite, backbone, str(group.seed), db=request.url, overrides=request.overrides,
                       sets=[*request.sets, *set_assignments(picked.params)], options=options, console=session.console)
    runner = planned.runner
    key = runner.key(planned.jobs[0])
    release_dead_holders(session.store, key, session.job_id)  # a SLURM job's run whose job has ended
    _report_earlier_steps(session, trial, key)
    runner.observers.append(PruningObserver(session, trial, runner))
    [outcome] = execute(planned).outcomes
    result = TrialResult(backbone, trial.number, "failed", picked.params, run_id=outcome.run_id,
                         continues=picked.continues)
    with session.timed():
        value = outcome.metrics.get(group.metric)
        if outcome.status in ("done", "skipped") and isinstance(value, (int, float)):
            study_tell(session, backbone, trial, value=float(value))
            result.status, result.value = "complete", float(value)
        elif outcome.status == "pruned":
            study_tell(session, backbone, trial, state=TrialState.PRUNED)
            result.status, result.error = "pruned", outcome.error
        else:
            why = outcome.error or (f"its run {outcome.run_id} is trained by another process"
                                    if outcome.status == "busy" else f"its run ended {outcome.status}")
            trial.set_user_attr("error", why)
            study_tell(session, backbone, trial, state=TrialState.FAIL)
            result.status, result.error = "busy" if outcome.status == "busy" else "failed", why
    return result


def pick_and_run(session: Session, backbone: str, announce=None) -> TrialResult | None:
    """The next trial of ``backbone`` trained (None when its study has its budget), with the seconds it took in
    all and in Optuna's calls (asking included)."""
    started, optuna_before = time.perf_counter(), session.optuna_s
    picked = next_trial(session, backbone)
    if picked is None:
        return None
    if announce:
        announce("start", backbone, picked)
    result = run_trial(session, backbone, picked)
    result.wall_s = time.perf_counter() - started
    result.optuna_s = session.optuna_s - optuna_before
    return result


def study_tell(session: Session, backbone: str, trial, value: float | None = None, state=None) -> None:
    session.studies[backbone].tell(trial, value, state=state)


def _report_earlier_steps(session: Session, trial: optuna.Trial, key) -> None:
    """A trial carrying on an interrupted run: the run's evaluated epochs so far, reported to it (the pruner
    compares whole curves)."""
    unfinished = [run for run in session.store.find_runs(key) if run.status not in RUN_ENDED]
    if not unfinished:
        return
    metric = session.group.metric
    with session.timed():
        for step in session.store.steps(unfinished[0].id):
            value = step.metrics.get(metric)
            if isinstance(value, (int, float)):
                trial.report(float(value), step.step)


# --- the loop -----------------------------------------------------------------------------------------------------
def tune(request: TuneRequest, console: Console | None = None, announce=None) -> TuneOutcome:
    """Train every backbone's trials round-robin until each study has ``request.trials`` finished trials; a backbone
    whose trials keep failing (as many failures as its budget) is given up, with the reason."""
    announce = announce or (lambda kind, backbone, item: None)
    session = Session(request, console)
    outcome = TuneOutcome()
    failures = {backbone: 0 for backbone in request.group.backbones}
    try:
        pending = list(request.group.backbones)
        while pending:
            for backbone in list(pending):
                result = pick_and_run(session, backbone, announce)
                if result is None:
                    pending.remove(backbone)
                    continue
                outcome.results.append(result)
                announce("end", backbone, result)
                if result.status in ("failed", "busy"):
                    failures[backbone] += 1
                    if failures[backbone] >= request.trials:
                        outcome.gave_up[backbone] = f"{failures[backbone]} trials failed, the last: {result.error}"
                        pending.remove(backbone)
        outcome.states = {backbone: study_state(study) for backbone, study in session.studies.items()}
    finally:
        session.close()
    return outcome


def states_of(request: TuneRequest) -> dict[str, StudyState]:
    """Every backbone's study as it stands."""
    studies = open_studies(request.group, request.url, request.trials)
    return {backbone: study_state(study) for backbone, study in studies.items()}


# --- re-running the best -----------------------------------------------------------------------------------------
def best_trials(request: TuneRequest, states: dict[str, StudyState]) -> dict[str, tuple[int, dict]]:
    """Each backbone's best trial (number, values); one line when a study is short of its budget."""
    for backbone, state in states.items():
        if state.finished < request.trials or state.best_number is None:
            raise VbenchError(f"study {request.group.study_name(backbone)!r} has {state.finished} of {request.trials} "
                              "finished trials: give the same command again to finish them before re-running the "
                              "best (every backbone is re-run after the same budget)")
    return {backbone: (state.best_number, state.best_params) for backbone, state in states.items()}


def rerun_request(request: TuneRequest, number: int, params: dict) -> tuple[list[str], object]:
    """The sets and run options of the re-runs of a best trial: normal runs of its recipe (their own recipe hash),
    marked as re-runs of the study's trial so that reports keep them apart."""
    marks = {"tune": {"study": request.group.name, "rerun_of": number, "params": params}}
    return [*request.sets, *set_assignments(params)], replace(request.options, marks=marks)


def rerun_best(request: TuneRequest, seeds: list[int], console: Console | None = None,
               states: dict[str, StudyState] | None = None) -> list[tuple[str, int, RunResult]]:
    """Train each backbone's best trial's recipe on ``seeds`` (done runs are kept): [(backbone, trial, result)]."""
    best = best_trials(request, states or states_of(request))
    results = []
    for backbone, (number, params) in best.items():
        sets, options = rerun_request(request, number, params)
        planned = plan_run(request.suite, backbone, ",".join(map(str, seeds)), db=request.url,
                           overrides=request.overrides, sets=sets, options=options, console=console)
        if console is not None:
            console.print(f"{backbone}: re-running trial {number} ({params_text(params)}) on seeds "
                          f"{', '.join(map(str, seeds))}", highlight=False)
        results.append((backbone, number, execute(planned)))
    return results
