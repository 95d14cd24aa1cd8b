"""The one Runner: it trains every (backbone, seed) of a suite for any task and records the runs.

The task (``vbench.tasks``) says what a model, a batch, a step and an evaluation are; the Runner owns
everything else: the run store's rows and leases, checkpoints (atomic, verified, tied to the store and
run), deterministic resume, the NaN/inf guard, precision (bf16/fp16 autocast) and ``torch.compile``,
progress bars and the measurements of every run (throughput, peak memory, wall time).

Resume is exact: torch's global RNG is reseeded from (seed, stage) at the start of every stage and a
task's batches are a function of (seed, stage), so a run resumed after stage k replays stages k+1..
as an uninterrupted run would (bit for bit on the CPU, with the same thread count).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vbench.engine import distributed, mfu
from vbench.engine.meters import PeakMemory, StageMeter, Totals
from vbench.engine.precision import Compiled, Precision, resolve_device
from vbench.engine.rows import run_row, run_settings
from vbench.errors import first_line, one_line
from vbench.store import RunKey, Store
from vbench.store.artifacts import predictions_path, save_weights, weights_path
from vbench.store.checkpoint import Checkpoints
from vbench.store.leases import Lease
from vbench.store.predictions import save_predictions
from vbench.tasks.base import DataInfo, stage_seed


@dataclass(frozen=True)
class RunOptions:
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    pipeline: str = "batched"
    force: bool = False
    checkpoints: bool = True
    limit: int | None = None
    data_root: str | None = None
    download: bool = False
    launch: dict | None = None  # how the run was launched (a SLURM job: id, log), kept on its row
    marks: dict | None = None  # kept in the run's settings: what else the run belongs to (a tuning trial or re-run)
    key_salt: str | None = None  # mixed into the run key's recipe hash: a tuning trial is an experiment of its own


class StopRun(Exception):
    """Raised by an observer to end a run early (a tuning trial's pruner): the run is recorded as pruned, its
    steps so far and checkpoint kept."""


@dataclass
class Job:
    """One (backbone, seed), with the sizes measured when planning, or why it cannot be built."""

    spec: Any
    seed: int
    size: dict = field(default_factory=dict)
    error: str | None = None


@dataclass
class RunOutcome:
    backbone: str
    seed: int
    status: str  # done | failed | interrupted | pruned | skipped | busy
    run_id: int | None = None
    metrics: dict = field(default_factory=dict)
    params: int | None = None
    flops: int | None = None
    images_per_s: float | None = None
    peak_memory_bytes: int | None = None
    wall_time_s: float | None = None
    error: str | None = None
    resumed_from: int = 0


# --- the runner ------------------------------------------------------------------------------------
class Runner:
    def __init__(self, suite, options: RunOptions, console: Console | None = None, observers=()):
        self.suite, self.options = suite, options
        self.observers = list(observers)  # called with (run_id, job, stage, row) after each stage is recorded
        self.info = suite.task_info
        self.console = console or Console()
        self.device = resolve_device(options.device)
        self.dist = distributed.setup(self.device)  # torchrun: this process's rank (a no-op otherwise)
        self.device = self.dist.device(self.device)
        if not self.dist.is_main:
            self.console = Console(quiet=True)
        self.precision = Precision.resolve(options.amp, self.device)
        self.task = self.info.load()(suite, self.device, pipeline=options.pipeline, data_root=options.data_root,
                                     download=options.download, limit=options.limit)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.data: DataInfo | None = None
        self.progress = Progress(disable=True)

    # planning (nothing is written) ----------------------------------------------------------------
    def prepare(self) -> DataInfo:
        self.dist.check_batch_size(self.suite.recipe.batch_size)
        self.data = self.task.prepare()
        self.stages = self.task.stages()
        return self.data

    def plan(self, specs: list, seeds: list[int]) -> list[Job]:
        """Build every backbone once and measure it; one that cannot be built becomes a job that fails."""
        jobs = []
        for spec in specs:
            spec.variant(self.info.name)  # a backbone without this task is bad input
            torch.manual_seed(0)
            try:
                model = self.task.build_model(spec)
                size = self.task.size(model)
                error = None
            except Exception as exc:  # noqa: BLE001 - reported in one line; the other backbones still run
                size, error = {}, one_line(exc)
            jobs += [Job(spec, seed, size, error) for seed in seeds]
        return jobs

    # running --------------------------------------------------------------------------------------
    def run(self, store: Store, jobs: list[Job]) -> list[RunOutcome]:
        self.store = store
        if self.dist.is_main:  # the other ranks of a distributed run have no store
            self.checkpoints = Checkpoints(store.artifact_dir("checkpoints"), store.store_id, warn=self._log)
        self.progress = self._new_progress(total=len(jobs) * len(self.stages))
        with self.progress:
            return [self.run_job(job) for job in jobs]

    def _new_progress(self, total: int) -> Progress:
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[stats]}"), console=self.console,
                            disable=not self.console.is_terminal or not self.dist.is_main)  # a log file gets one line per stage instead
        self.overall = progress.add_task(self.suite.name, total=total, stats="")
        self.stage_bar = progress.add_task("stage", total=1, stats="")
        return progress

    def _log(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)

    def key(self, job: Job) -> RunKey:
        return RunKey(self.suite.name, job.spec.name, job.seed, self.recipe_hash(), self.data.identity,
                      self.precision.name)

    def recipe_hash(self) -> str:
        """The run key's recipe hash: the recipe's own, salted where the options ask for an experiment of its own."""
        plain = self.suite.recipe.key_hash()
        if not self.options.key_salt:
            return plain
        return hashlib.sha256(f"{plain}:{self.options.key_salt}".encode()).hexdigest()[:16]

    def run_job(self, job: Job) -> RunOutcome:
        label = f"{job.spec.name} seed {job.seed}"
        outcome = RunOutcome(job.spec.name, job.seed, "running", params=job.size.get("params"),
                             flops=job.size.get("flops"))
        if job.error:
            self._log(f"[red]{label}: failed: {job.error}[/red]")
            return self._advance(outcome, "failed", error=job.error)
        key = self.key(job)
        state, run = self.dist.from_main(
            lambda: self.store.claim_run(key, self.run_fields(job), self.owner, force=self.options.force))
        outcome.run_id = run.id
        if state == "done":
            self._log(f"{label}: already done (run {run.id}, {self._primary_text(run.metrics)}); skipped, --force reruns it")
            outcome.metrics = dict(run.metrics or {})
            return self._advance(outcome, "skipped")
        if state == "busy":
            self._log(f"{label}: run {run.id} is being trained by {run.owner}; skipped (it becomes resumable if "
                      f"that process stops renewing its lease)")
            return self._advance(outcome, "busy")
        try:
            with Lease(self.store, run.id, self.owner, self._log) if self.dist.is_main else nullcontext():
                checkpoint = self.dist.from_main(lambda: self._resume_point(run.id, key, label), self.device) \
                    if state == "resume" else None
                self._train(job, run.id, key, checkpoint, outcome, label)
        except StopRun as stop:
            reason = first_line(stop, empty="stopped early by an observer")
            self._finish(outcome, "pruned", reason)
            self._log(f"{label}: {reason}")
        except KeyboardInterrupt:
            self._finish(outcome, "interrupted", "interrupted by the user (Ctrl-C)")
            self._log(f"{label}: interrupted; the same command resumes it from its last checkpoint")
            raise
        except Exception as exc:  # noqa: BLE001 - this run fails, the suite goes on
            self._finish(outcome, "failed", one_line(exc))
            self._log(f"[red]{label}: failed: {one_line(exc)}[/red]")
            if self.dist.active:  # after a failure the ranks cannot be sure to be in step: end them all
                raise
        return outcome

    def _advance(self, outcome: RunOutcome, status: str, error: str | None = None) -> RunOutcome:
        outcome.status, outcome.error = status, error
        self.progress.advance(self.overall, len(self.stages))
        return outcome

    def _primary_text(self, metrics: dict | None) -> str:
        metric = self.info.primary_metric
        value = (metrics or {}).get(metric.name)
        return f"{metric.label} {value:.2f}" if isinstance(value, (int, float)) else "no metrics"

    def run_fields(self, job: Job) -> dict:
        """The row a run of ``job`` starts with (a queued SLURM run starts with the same)."""
        return run_row(self.suite, job.spec, job.seed, self.data, self._settings(), job.size, self.device,
                       steps=self.stages[-1].label, recipe_hash=self.recipe_hash(), launch=self.options.launch)

    def _settings(self) -> dict:
        return {**run_settings(self.device, self.precision.name, self.options.compile, self.options.pipeline,
                               self.dist.world_size), **(self.options.marks or {})}

    def _resume_point(self, run_id: int, key: RunKey, label: str) -> dict | None:
        checkpoint = self.checkpoints.load(run_id, _key_dict(key), self.device) if self.options.checkpoints else None
        history = checkpoint["history"] if checkpoint else []
        self.store.replace_steps(run_id, history, steps_done=history[-1][0] if history else 0)
        if checkpoint:
            self._log(f"{label}: resuming run {run_id} from its checkpoint after {self.info.step_unit} "
                      f"{history[-1][0] if history else 0}")
            threads = checkpoint.get("threads")
            if threads not in (None, torch.get_num_threads()) and self.device.type == "cpu":
                self._log(f"note: the checkpoint was written with {threads} CPU threads, this process has "
                          f"{torch.get_num_threads()}: the resumed stages may differ in the last bits")
        return checkpoint

    def _finish(self, outcome: RunOutcome, status: str, error: str | None) -> None:
        outcome.status, outcome.error = status, error
        if not self.dist.is_main:
            return
        try:
            self.store.finish_run(outcome.run_id, status, error=error)
        except Exception as exc:  # noqa: BLE001 - the store failing must not hide the first error
            self._log(f"[red]could not record run {outcome.run_id} as {status}: {exc}[/red]")

    # the training loop ----------------------------------------------------------------------------
    def _train(self, job: Job, run_id: int, key: RunKey, checkpoint: dict | None, outcome: RunOutcome,
               label: str) -> None:
        task, precision = self.task, self.precision
        session_start = time.perf_counter()
        memory = PeakMemory(self.device)
        torch.manual_seed(job.seed)
        model = task.build_model(job.spec).to(self.device)
        optimizer, schedule = task.make_optimizer(model)
        scaler = precision.scaler()
        totals = Totals.restore(checkpoint)
        if checkpoint:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])
        self.progress.advance(self.overall, len(totals.history))
        outcome.resumed_from = len(totals.history)
        train_model = Compiled(self.dist.wrap(model), self.options.compile, self._log, self.precision.attention)
        compiling = self.options.compile  # the first step compiles: it is timed apart from training

        for stage in self.stages[len(totals.history):]:
            torch.manual_seed(stage_seed(job.seed, stage.index))
            model.train()
            meter = StageMeter(self.device, stage, self.info.step_unit, self.dist)
            self.progress.reset(self.stage_bar, total=stage.iterations, stats="",
                                description=f"{label} {self.info.step_unit} {stage.label}")
            for step, batch in enumerate(task.train_batches(job.seed, stage)):
                if not getattr(task, "local_batches", False):  # a streamed task reads each rank's share itself
                    batch = self.dist.shard(batch)  # this rank's share of the global batch
                step_started = time.perf_counter() if compiling else None
                schedule.step_update(stage.first_iteration + step)
                loss, stats, size = train_model.run_step(
                    lambda model: self._forward_backward(model, batch, optimizer, scaler))
                scaler.step(optimizer)
                scaler.update()
                meter.add(loss, stats, size)
                if compiling:
                    compiling, totals.compile_s = False, time.perf_counter() - step_started
                    meter.excluded_s, meter.excluded_images = totals.compile_s, size * self.dist.world_size
                if meter.due:
                    self.progress.update(self.stage_bar, stats=_stats_text(meter.means(), optimizer, meter))
                self.progress.advance(self.stage_bar)
            row = {**meter.close(), "lr": optimizer.param_groups[0]["lr"]}
            with precision.autocast():
                evaluation = task.evaluate(model)
            row.update(evaluation.metrics)
            self._record(run_id, key, stage, row, totals, model, optimizer, scaler, memory, session_start)
            for observe in self.observers if self.dist.is_main else ():  # rank 0 alone logs
                observe(run_id, job, stage, row)
            self.progress.advance(self.overall)
            self._log(f"{label} {self.info.step_unit} {stage.label}/{self.stages[-1].label}: "
                      f"{_row_text(row, self.info)}")
        self._done(outcome, run_id, key, totals, session_start, train_model, model, evaluation)

    def _forward_backward(self, model, batch, optimizer, scaler):
        with self.precision.autocast():
            loss, stats, size = self.task.train_step(model, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        return loss, stats, size

    def _record(self, run_id, key, stage, row, totals, model, optimizer, scaler, memory, session_start) -> None:
        totals.add(stage.label, row, memory.read())
        wall = totals.prior_wall_s + time.perf_counter() - session_start
        if not self.dist.is_main:  # rank 0 alone writes checkpoints and the store
            return
        if self.options.checkpoints:
            self.checkpoints.save(run_id, _key_dict(key), {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None, **totals.state(wall),
                "threads": torch.get_num_threads()})
        self.store.add_step(run_id, stage.label, totals.history[-1][1], steps_done=stage.label,
                            train_images_per_s=totals.images_per_s, peak_memory_bytes=totals.peak_memory,
                            peak_memory_kind=memory.kind, wall_time_s=wall)

    def _done(self, outcome, run_id, key, totals, session_start, train_model, model, evaluation) -> None:
        """Keep the final weights and the final evaluation's per-image predictions, then mark the run done with its
        model FLOP/s and MFU (``vbench.engine.mfu``) in its settings."""
        if not self.dist.is_main:
            outcome.status = "done"
            return
        weights = save_weights(weights_path(self.store, run_id), model)
        evaluation.predictions.meta.update(_key_dict(key), run_id=run_id, task=self.info.name)
        try:
            save_predictions(predictions_path(self.store, run_id), evaluation.predictions)
        except BaseException:  # a failed run keeps no final files
            weights.unlink(missing_ok=True)
            raise
        final = totals.history[-1][1]
        metrics = {m.name: final[m.name] for m in self.info.metrics if m.name in final}
        outcome.metrics = metrics
        outcome.images_per_s, outcome.peak_memory_bytes = totals.images_per_s, totals.peak_memory
        outcome.wall_time_s = totals.prior_wall_s + time.perf_counter() - session_start
        settings = {**self._settings(), "compiled": train_model.compiled, "compile_s": totals.compile_s,
                    **mfu.utilization(outcome.flops, outcome.images_per_s, self.device, self.precision.name,
                                      self.dist.world_size)}
        self.store.finish_run(run_id, "done", metrics=metrics, steps_done=totals.history[-1][0], settings=settings,
                              train_images_per_s=outcome.images_per_s, wall_time_s=outcome.wall_time_s,
                              **self._skipped_images(final, run_id))
        outcome.status = "done"

    def _skipped_images(self, final: dict, run_id: int) -> dict:
        """Streamed data: the corrupt images skipped (counted in the last evaluation's row), kept in the run's data
        column and said, so that losing images is never silent."""
        skipped = {split: final[f"skipped_{split}"] for split in ("train", "test") if final.get(f"skipped_{split}")}
        if not skipped:
            return {}
        counts = ", ".join(f"{count} {split}" for split, count in skipped.items())
        self._log(f"[yellow]note: run {run_id} skipped corrupt images that do not decode: {counts}[/yellow]")
        return {"data": {**self.data.description, "skipped_images": skipped}}


def _key_dict(key: RunKey) -> dict:
    return {"suite": key.suite, "backbone": key.backbone, "seed": key.seed, "recipe_hash": key.recipe_hash,
            "data_id": key.data_id}


def _stats_text(means: dict, optimizer, meter: StageMeter) -> str:
    rate = (meter.seen - meter.excluded_images) / max(time.perf_counter() - meter.started - meter.excluded_s, 1e-9)
    extras = " ".join(f"{name} {value:.2f}" for name, value in means.items() if name != "loss")
    return f"loss {means['loss']:.4f} {extras} lr {optimizer.param_groups[0]['lr']:.2e} {rate:.0f} img/s".replace("  ", " ")


def _row_text(row: dict, info) -> str:
    metrics = " ".join(f"{m.label} {row[m.name]:.2f}" for m in info.metrics if isinstance(row.get(m.name), (int, float)))
    rate = f" ({row['images_per_s']:.0f} img/s)" if row.get("images_per_s") else ""
    return f"loss {row['train_loss']:.4f} {metrics}{rate}"
