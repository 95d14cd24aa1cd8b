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

import math
import os
import platform
import resource
import socket
import threading
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vbench import __version__, distributed
from vbench.artifacts import predictions_path, weights_path
from vbench.checkpoint import Checkpoints
from vbench.errors import VbenchError
from vbench.store import RunKey, Store
from vbench.tasks.base import DataInfo, Stage, stage_seed

DEVICES = ("auto", "cpu", "cuda")
SYNC_EVERY = 25  # steps between reads of the on-device loss sum (the NaN/inf guard and the progress stats)
HEARTBEAT_SECONDS = 30


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the run is marked failed with this message."""


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
    status: str  # done | failed | interrupted | skipped | busy
    run_id: int | None = None
    metrics: dict = field(default_factory=dict)
    params: int | None = None
    flops: int | None = None
    images_per_s: float | None = None
    peak_memory_bytes: int | None = None
    wall_time_s: float | None = None
    error: str | None = None
    resumed_from: int = 0


# --- device, precision, compile --------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise VbenchError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VbenchError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    device_type: str

    @classmethod
    def resolve(cls, amp: bool, device: torch.device) -> "Precision":
        if not amp:
            return cls("fp32", device.type)
        if device.type == "cuda":
            return cls("bf16" if torch.cuda.is_bf16_supported() else "fp16", "cuda")
        if not cpu_has_native_bf16():
            raise VbenchError("--amp: this CPU has no native bf16 (neither avx512_bf16 nor amx_bf16 in "
                              "/proc/cpuinfo), so bf16 autocast would be emulated and slower; leave out --amp")
        return cls("bf16", "cpu")

    def autocast(self):
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16 if self.name == "bf16" else torch.float16)

    def attention(self):
        """The attention kernels for training: on the CPU in bf16, the math path. The fused (flash) kernel's
        bf16 backward took 76% of a ViT-Small step there and made bf16 1.8x slower than fp32; the math
        path runs on the bf16 matmuls (AMX) instead. Results are equal up to bf16 rounding either way."""
        if self.name == "bf16" and self.device_type == "cpu":
            return sdpa_kernel([SDPBackend.MATH])
        return nullcontext()

    def scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cuda", enabled=self.name == "fp16")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    return f"cpu: {platform.processor() or platform.machine()}"


class PeakMemory:
    """This run's own peak: CUDA max allocated since the run started; on the CPU the process's peak
    resident set since the run started (Linux resets it through /proc/self/clear_refs), else the
    process's lifetime peak. ``kind`` says which."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.kind = "cuda_max_allocated"
        elif _reset_peak_rss():
            self.kind = "cpu_peak_rss_of_run"
        else:
            self.kind = "cpu_peak_rss_of_process"

    def read(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.kind == "cpu_peak_rss_of_run":
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Compiled:
    """``torch.compile`` of a model's training forward, run inside ``context`` (the precision's attention
    kernels; inside the compiled region, so that the graph is traced with them), falling back to eager with
    a one-line warning when compiling fails; ``compiled`` says what ran. Evaluation uses the model itself."""

    def __init__(self, model: nn.Module, enabled: bool, warn, context=nullcontext, backend="inductor"):
        self.warn = warn

        def forward(*args, **kwargs):
            with context():
                return model(*args, **kwargs)

        self.forward = forward
        self.module = torch.compile(forward, backend=backend) if enabled else forward
        self.compiled = enabled

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def run_step(self, step):
        """``step(self)``: a forward and a backward through this model. A compiled step that fails, in the
        forward, in the backward (compiled at its first call) or in a recompile (the last, smaller batch), is
        run again eagerly, and every later step with it."""
        try:
            return step(self)
        except Exception as exc:  # noqa: BLE001 - a graph inductor cannot take runs eagerly
            if not self.compiled:
                raise
            self.warn(f"warning: torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                      "training eagerly")
            self.module, self.compiled = self.forward, False
            return step(self)


# --- per-stage bookkeeping -------------------------------------------------------------------------
class StageMeter:
    """Running sums of one stage kept on the device and read every ``SYNC_EVERY`` steps, which is
    also when the NaN/inf guard looks at them: no host sync on every step."""

    def __init__(self, device: torch.device, stage: Stage, unit: str, dist: distributed.Distributed = distributed.SINGLE):
        self.device, self.stage, self.unit, self.dist = device, stage, unit, dist
        self.sums: dict[str, torch.Tensor] = {}
        self.seen = 0
        self.steps = 0
        self.excluded_s = 0.0  # the step that compiled, timed apart
        self.excluded_images = 0
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, stats: dict, size: int) -> None:
        for name, value in {"loss": loss, **stats}.items():
            weighted = value.detach().double() * size
            self.sums[name] = weighted if name not in self.sums else self.sums[name] + weighted
        self.seen += size * self.dist.world_size  # every rank trains an equal share of the global batch
        self.steps += 1

    @property
    def due(self) -> bool:
        return self.steps % SYNC_EVERY == 0 or self.steps == self.stage.iterations

    def means(self) -> dict[str, float]:
        values = {name: float(total) / self.seen for name, total in self._global_sums().items()}
        if not math.isfinite(values["loss"]):
            raise NonFiniteLoss(f"non-finite training loss ({values['loss']}) in {self.unit} {self.stage.label}, "
                                f"within its first {self.steps} steps")
        return values

    def _global_sums(self) -> dict[str, torch.Tensor]:
        """The sums over every rank (each rank calls this at the same step)."""
        if not self.dist.active:
            return self.sums
        names = sorted(self.sums)
        summed = self.dist.sum(torch.stack([self.sums[name] for name in names]))
        return dict(zip(names, summed))

    def close(self) -> dict:
        if self.steps == 0:
            raise VbenchError(f"the task yielded no training batch for stage {self.stage.label}")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        means = self.means()
        elapsed = time.perf_counter() - self.started - self.excluded_s
        timed = self.seen - self.excluded_images
        return {**{f"train_{name}": value for name, value in means.items()}, "images": timed,
                "time_s": elapsed, "images_per_s": timed / elapsed if elapsed > 0 and timed else None}


class Lease:
    """Renews the run row's heartbeat in the background while this process trains it."""

    def __init__(self, store: Store, run_id: int, owner: str, warn):
        self.store, self.run_id, self.owner, self.warn = store, run_id, owner, warn
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"vbench-lease-{run_id}")

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                if not self.store.heartbeat(self.run_id, self.owner):
                    self.warn(f"warning: run {self.run_id} was taken over by another process")
                    return
            except Exception as exc:  # noqa: BLE001 - a missed heartbeat must not stop training
                self.warn(f"warning: heartbeat of run {self.run_id} failed: {exc}")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=5)


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
                size, error = {}, _one_line(exc)
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
        return RunKey(self.suite.name, job.spec.name, job.seed, self.suite.recipe.key_hash(), self.data.identity,
                      self.precision.name)

    def run_job(self, job: Job) -> RunOutcome:
        label = f"{job.spec.name} seed {job.seed}"
        outcome = RunOutcome(job.spec.name, job.seed, "running", params=job.size.get("params"),
                             flops=job.size.get("flops"))
        if job.error:
            self._log(f"[red]{label}: failed: {job.error}[/red]")
            return self._advance(outcome, "failed", error=job.error)
        key = self.key(job)
        state, run = self.dist.from_main(
            lambda: self.store.claim_run(key, self._run_fields(job), self.owner, force=self.options.force))
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
        except KeyboardInterrupt:
            self._finish(outcome, "interrupted", "interrupted by the user (Ctrl-C)")
            self._log(f"{label}: interrupted; the same command resumes it from its last checkpoint")
            raise
        except Exception as exc:  # noqa: BLE001 - this run fails, the suite goes on
            self._finish(outcome, "failed", _one_line(exc))
            self._log(f"[red]{label}: failed: {_one_line(exc)}[/red]")
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

    def _run_fields(self, job: Job) -> dict:
        recipe = self.suite.recipe
        size = dict(job.size)
        return dict(
            task=self.info.name, suite=self.suite.name, dataset=self.suite.kind, backbone=job.spec.name,
            family=job.spec.family, paper_names=list(job.spec.paper_names), seed=job.seed,
            recipe={**recipe.to_dict(), "seed": job.seed}, recipe_hash=recipe.key_hash(), data_id=self.data.identity,
            data=self.data.description, settings=self._settings(), img_size=self.suite.img_size,
            num_classes=self.suite.num_classes, step_unit=self.info.step_unit, steps=self.stages[-1].label,
            steps_done=0, metrics={}, params=size.pop("params", None), flops=size.pop("flops", None), counts=size,
            host=socket.gethostname(), device_name=device_name(self.device), torch_version=torch.__version__,
            vbench_version=__version__, launch=self.options.launch,
        )

    def _settings(self) -> dict:
        return {"device": str(self.device), "precision": self.precision.name, "compile": self.options.compile,
                "pipeline": self.options.pipeline, "threads": torch.get_num_threads(), "world_size": self.dist.world_size}

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
        """Keep the final weights and the final evaluation's per-image predictions, then mark the run done."""
        from vbench.artifacts import save_weights
        from vbench.predictions import save_predictions

        if not self.dist.is_main:
            outcome.status = "done"
            return
        save_weights(weights_path(self.store, run_id), model)
        evaluation.predictions.meta.update(_key_dict(key), run_id=run_id, task=self.info.name)
        save_predictions(predictions_path(self.store, run_id), evaluation.predictions)
        final = totals.history[-1][1]
        metrics = {m.name: final[m.name] for m in self.info.metrics if m.name in final}
        outcome.metrics = metrics
        outcome.images_per_s, outcome.peak_memory_bytes = totals.images_per_s, totals.peak_memory
        outcome.wall_time_s = totals.prior_wall_s + time.perf_counter() - session_start
        settings = {**self._settings(), "compiled": train_model.compiled, "compile_s": totals.compile_s}
        self.store.finish_run(run_id, "done", metrics=metrics, steps_done=totals.history[-1][0], settings=settings,
                              train_images_per_s=outcome.images_per_s, wall_time_s=outcome.wall_time_s)
        outcome.status = "done"


@dataclass
class Totals:
    """What a run has done so far, carried through checkpoints."""

    history: list = field(default_factory=list)  # (step label, metrics row)
    train_images: int = 0
    train_time_s: float = 0.0
    prior_wall_s: float = 0.0
    peak_memory: int = 0
    compile_s: float = 0.0

    @classmethod
    def restore(cls, checkpoint: dict | None) -> "Totals":
        if not checkpoint:
            return cls()
        return cls(list(checkpoint["history"]), checkpoint["train_images"], checkpoint["train_time_s"],
                   checkpoint["wall_time_s"], checkpoint.get("peak_memory_bytes") or 0, checkpoint.get("compile_s", 0.0))

    def add(self, label: int, row: dict, peak_memory: int) -> None:
        row = dict(row)
        self.train_images += row.pop("images")
        self.train_time_s += row["time_s"]
        self.peak_memory = max(self.peak_memory, peak_memory)
        self.history.append((label, row))

    @property
    def images_per_s(self) -> float | None:
        return self.train_images / self.train_time_s if self.train_time_s > 0 else None

    def state(self, wall_s: float) -> dict:
        return {"history": self.history, "train_images": self.train_images, "train_time_s": self.train_time_s,
                "wall_time_s": wall_s, "peak_memory_bytes": self.peak_memory, "compile_s": self.compile_s}


def _key_dict(key: RunKey) -> dict:
    return {"suite": key.suite, "backbone": key.backbone, "seed": key.seed, "recipe_hash": key.recipe_hash,
            "data_id": key.data_id}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, (VbenchError, NonFiniteLoss)) else f"{type(exc).__name__}: {text}"


def _stats_text(means: dict, optimizer, meter: StageMeter) -> str:
    rate = (meter.seen - meter.excluded_images) / max(time.perf_counter() - meter.started - meter.excluded_s, 1e-9)
    extras = " ".join(f"{name} {value:.2f}" for name, value in means.items() if name != "loss")
    return f"loss {means['loss']:.4f} {extras} lr {optimizer.param_groups[0]['lr']:.2e} {rate:.0f} img/s".replace("  ", " ")


def _row_text(row: dict, info) -> str:
    metrics = " ".join(f"{m.label} {row[m.name]:.2f}" for m in info.metrics if isinstance(row.get(m.name), (int, float)))
    rate = f" ({row['images_per_s']:.0f} img/s)" if row.get("images_per_s") else ""
    return f"loss {row['train_loss']:.4f} {metrics}{rate}"
