"""The training engine behind ``vbench run``.

For every (backbone, seed) of a suite: build the backbone for the suite's image size and classes,
train it with the suite's recipe (AdamW, linear warm-up then cosine decay stepped every iteration,
label-smoothed mixed cross-entropy on the batched recipe's batches), evaluate top-1/top-5 on the
test split after every epoch, and record everything in the run store.

Resumable and exact: a checkpoint (model, optimizer, scheduler, metrics so far) is written
atomically after every epoch; torch's global RNG (dropout, drop-path) is reseeded from
(seed, epoch) at the start of every epoch and the recipe draws its batches from (seed, epoch), so
a run resumed from epoch k replays epochs k+1.. exactly as an uninterrupted run would (bit for
bit on the CPU).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import platform
import resource
import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from vbench import __version__, registry
from vbench.errors import VbenchError
from vbench.store import RunKey, Store

PIPELINES = ("batched", "reference")
DEVICES = ("auto", "cpu", "cuda")
CHECKPOINT_FORMAT = 1


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the run is marked failed with this message."""


# --- options and plans -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineOptions:
    device: torch.device
    amp: bool = False
    compile: bool = False
    pipeline: str = "batched"
    force: bool = False

    @property
    def amp_active(self) -> bool:
        return self.amp and self.device.type == "cuda"

    def settings(self) -> dict:
        return {"device": str(self.device), "amp": self.amp_active, "amp_dtype": _amp_dtype_name(self) if self.amp_active else None,
                "compile": self.compile, "pipeline": self.pipeline, "threads": torch.get_num_threads()}


@dataclass
class Job:
    """One (backbone, seed) of a suite, with the params/FLOPs measured while validating it."""

    spec: registry.BackboneSpec
    seed: int
    params: int
    flops: int
    flops_complete: bool = True


@dataclass
class RunOutcome:
    backbone: str
    seed: int
    status: str  # done | failed | interrupted | skipped
    run_id: int | None = None
    top1: float | None = None
    top5: float | None = None
    params: int | None = None
    flops: int | None = None
    images_per_s: float | None = None
    peak_memory_bytes: int | None = None
    wall_time_s: float | None = None
    error: str | None = None
    resumed_from: int = 0


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise VbenchError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VbenchError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def parse_seeds(text: str | None, default: int) -> list[int]:
    if text is None or not text.strip():
        return [default]
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise VbenchError(f"--seeds {text!r} is not a comma-separated list of integers (for example --seeds 0,1,2)") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise VbenchError(f"--seeds {text!r} must list distinct non-negative integers (for example --seeds 0,1,2)")
    return seeds


def parse_backbones(text: str) -> list[registry.BackboneSpec]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise VbenchError("--backbones is empty; give comma-separated names (see `vbench list backbones`)")
    specs = [registry.get_backbone(name) for name in names]  # unknown name -> UnknownNameError
    seen: list[registry.BackboneSpec] = []
    for spec in specs:
        if spec.name not in [s.name for s in seen]:
            seen.append(spec)
    return seen


def recipe_key_hash(recipe) -> str:
    """The recipe hash that identifies a run: the recipe's own hash with the seed left out, so the
    seeds of one recipe share it (the run's seed is a key column of its own)."""
    return dataclasses.replace(recipe, seed=0).hash()


def accepts_keyword(builder, name: str) -> bool:
    parameters = inspect.signature(builder).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def build_model(spec: registry.BackboneSpec, suite) -> nn.Module:
    overrides = {}
    if accepts_keyword(spec.builder, "drop_path"):
        overrides["drop_path"] = suite.recipe.drop_path
    try:
        return spec.build(img_size=suite.img_size, num_classes=suite.num_classes, **overrides)
    except VbenchError:
        raise
    except Exception as exc:  # a builder that cannot make this size/class count is bad input, not a crash
        raise VbenchError(
            f"backbone {spec.name!r} cannot be built for suite {suite.name!r} "
            f"({suite.img_size}x{suite.img_size}, {suite.num_classes} classes): {type(exc).__name__}: {exc}"
        ) from None


def plan_jobs(suite, specs: list[registry.BackboneSpec], seeds: list[int], console: Console | None = None) -> list[Job]:
    """Validate every backbone against the suite (task, buildable) and measure params/FLOPs once each."""
    from vbench.measure import count_flops, count_params

    if suite.task != "classification":
        raise VbenchError(f"suite {suite.name!r} is a {suite.task} suite; `vbench run` trains classification suites")
    jobs = []
    status = console.status("building and measuring the backbones...") if console else nullcontext()
    with status:
        for spec in specs:
            if suite.task not in spec.tasks:
                raise VbenchError(f"backbone {spec.name!r} does not support {suite.task}; its tasks: {', '.join(spec.tasks)}")
            model = build_model(spec, suite)
            flops = count_flops(model, suite.img_size)
            for seed in seeds:
                jobs.append(Job(spec=spec, seed=seed, params=count_params(model), flops=flops.total,
                                flops_complete=flops.complete))
    return jobs


# --- small helpers ---------------------------------------------------------------------------------
def epoch_seed(seed: int, epoch: int) -> int:
    """torch's global seed for one epoch (dropout, drop-path): a function of (seed, epoch) only."""
    return int(np.random.SeedSequence([seed, epoch, 0x5EED]).generate_state(1, dtype=np.uint64)[0] % (2**63))


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


def peak_memory(device: torch.device) -> tuple[int, str]:
    """CUDA: the max memory allocated by tensors since the run started. CPU: the process's peak
    resident set size (``ru_maxrss``, a lifetime peak, so it includes the dataset and earlier runs of
    the same process)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_peak_rss"


def _amp_dtype(options: EngineOptions) -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _amp_dtype_name(options: EngineOptions) -> str:
    return str(_amp_dtype(options)).replace("torch.", "")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def checkpoint_path(store: Store, key: RunKey) -> Path:
    return store.checkpoint_dir / f"{_safe(key.suite)}__{_safe(key.backbone)}__seed{key.seed}__{key.recipe_hash}.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over the old checkpoint:
    a reader (or a resumed run) only ever sees a complete checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, key: RunKey, device: torch.device) -> dict | None:
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    if not path.exists():
        return None
    state = torch.load(path, map_location=device, weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT or state.get("key") != dataclasses.asdict(key):
        return None
    return state


def make_optimizer(model: nn.Module, recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
    raise VbenchError(f"unknown optimizer {recipe.optimizer!r}; choose adamw, adam or sgd")


def make_scheduler(optimizer: torch.optim.Optimizer, recipe, steps_per_epoch: int):
    """timm's cosine schedule, stepped per iteration: a linear warm-up from min_lr to lr over
    ``warmup_epochs``, then cosine decay to min_lr over the remaining epochs."""
    import logging

    from timm.scheduler import CosineLRScheduler

    # timm warns when the cosine part is a single step (a run that is all warm-up); that is intended here
    logging.getLogger("timm.scheduler.cosine_lr").setLevel(logging.ERROR)
    total = recipe.epochs * steps_per_epoch
    warmup = min(recipe.warmup_epochs * steps_per_epoch, max(total - 1, 0))
    return CosineLRScheduler(
        optimizer, t_initial=max(total - warmup, 1), lr_min=recipe.min_lr, warmup_t=warmup,
        warmup_lr_init=recipe.min_lr, warmup_prefix=True, t_in_epochs=False, cycle_limit=1,
    )


def make_recipe(suite, options: EngineOptions):
    if options.pipeline == "reference":
        from vbench.reference_pipeline import ReferenceRecipe

        return ReferenceRecipe(suite, options.device)
    from vbench.augment import BatchedRecipe

    return BatchedRecipe(suite, options.device)


@torch.no_grad()
def evaluate(model: nn.Module, recipe_impl, images: torch.Tensor, labels: torch.Tensor,
             autocast) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (%) on centre images."""
    model.eval()
    correct1 = correct5 = None
    total = 0
    for x, y in recipe_impl.eval_batches(images, labels):
        with autocast():
            logits = model(x)
        k = min(5, logits.shape[-1])
        top = logits.float().topk(k, dim=-1).indices
        hits = top.eq(y[:, None])
        batch1, batch5 = hits[:, 0].sum(), hits.any(dim=-1).sum()
        correct1 = batch1 if correct1 is None else correct1 + batch1
        correct5 = batch5 if correct5 is None else correct5 + batch5
        total += len(y)
    if total == 0:
        raise VbenchError("the test split is empty")
    return 100.0 * float(correct1) / total, 100.0 * float(correct5) / total


# --- the engine ------------------------------------------------------------------------------------
@dataclass
class Data:
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def load_data(suite, data_root=None, download: bool = False) -> Data:
    from vbench.data import load_split

    train_images, train_labels = load_split(suite, "train", data_root=data_root, download=download)
    test_images, test_labels = load_split(suite, "test", data_root=data_root, download=download)
    return Data(train_images, train_labels, test_images, test_labels)


class Engine:
    def __init__(self, store: Store, suite, data: Data, options: EngineOptions, console: Console | None = None):
        self.store = store
        self.suite = suite
        self.options = options
        self.console = console or Console()
        self.recipe = suite.recipe
        self.recipe_hash = recipe_key_hash(suite.recipe)
        self.recipe_impl = make_recipe(suite, options)
        device = options.device
        on_device = device.type == "cuda" and options.pipeline == "batched"
        # On a GPU the whole uint8 split moves once; the batched recipe augments it where it lies.
        self.data = Data(*(t.to(device) if on_device else t for t in
                           (data.train_images, data.train_labels, data.test_images, data.test_labels)))
        self.steps_per_epoch = self.recipe_impl.steps_per_epoch(len(data.train_images))
        if self.steps_per_epoch < 1:
            raise VbenchError(
                f"suite {suite.name!r} has {len(data.train_images)} training images, fewer than one batch of "
                f"{self.recipe.batch_size} x {self.recipe.repeats} repeats; lower batch_size with --batch-size"
            )
        self._new_progress(total_epochs=0, show=False)

    # progress -------------------------------------------------------------------------------------
    def _new_progress(self, total_epochs: int, show: bool) -> Progress:
        """An overall bar (epochs of every run) and a per-epoch bar (steps, with loss, acc, lr, img/s)."""
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[stats]}"), console=self.console,
            disable=not show,
        )
        self.overall = self.progress.add_task(f"{self.suite.name}", total=total_epochs, stats="")
        self.epoch_bar = self.progress.add_task("epoch", total=self.steps_per_epoch, stats="")
        return self.progress

    def run_all(self, jobs: list[Job]) -> list[RunOutcome]:
        outcomes = []
        # a log file gets one line per epoch instead of bar redraws
        with self._new_progress(len(jobs) * self.recipe.epochs, show=self.console.is_terminal):
            for job in jobs:
                outcomes.append(self.run_job(job))
        return outcomes

    def _log(self, message: str) -> None:
        self.progress.console.print(message, highlight=False)

    # one job --------------------------------------------------------------------------------------
    def run_job(self, job: Job) -> RunOutcome:
        key = RunKey(self.suite.name, job.spec.name, job.seed, self.recipe_hash)
        label = f"{job.spec.name} seed {job.seed}"
        path = checkpoint_path(self.store, key)
        if not self.options.force:
            done = self.store.find_runs(key, ("done",))
            if done:
                run = done[0]
                self._advance_overall(self.recipe.epochs)
                self._log(f"{label}: already done (run {run.id}, top-1 {run.top1:.2f}); skipped, --force reruns it")
                return RunOutcome(job.spec.name, job.seed, "skipped", run.id, run.top1, run.top5, run.params, run.flops,
                                  run.train_images_per_s, run.peak_memory_bytes, run.wall_time_s)
        elif path.exists():
            path.unlink()
        checkpoint = load_checkpoint(path, key, self.options.device)
        run_id = self._open_run(key, job, checkpoint)
        outcome = RunOutcome(job.spec.name, job.seed, "running", run_id, params=job.params, flops=job.flops,
                             resumed_from=checkpoint["epoch"] if checkpoint else 0)
        if checkpoint:
            self._log(f"{label}: resuming run {run_id} from its checkpoint after epoch {checkpoint['epoch']}")
            threads = checkpoint.get("threads")
            if threads not in (None, torch.get_num_threads()) and self.options.device.type == "cpu":
                self._log(f"note: the checkpoint was written with {threads} CPU threads, this process has "
                          f"{torch.get_num_threads()}: the resumed epochs may differ in the last bits")
        try:
            self._train(job, key, run_id, checkpoint, path, outcome, label)
        except KeyboardInterrupt:
            self._finish(outcome, "interrupted", "interrupted by the user (Ctrl-C)")
            self._log(f"{label}: interrupted; the same command resumes it from its last checkpoint")
            raise
        except NonFiniteLoss as exc:
            self._finish(outcome, "failed", str(exc))
            self._log(f"[red]{label}: failed: {exc}[/red]")
        except Exception as exc:  # any other error fails this run; the suite goes on
            message = f"{type(exc).__name__}: {exc}"
            self._finish(outcome, "failed", message)
            self._log(f"[red]{label}: failed: {message}[/red]")
        return outcome

    def _open_run(self, key: RunKey, job: Job, checkpoint: dict | None) -> int:
        """Reuse the newest unfinished row of this key (so a killed run leaves no stale row), else add one."""
        fields = dict(
            task="classification", suite=key.suite, dataset=self.suite.kind, backbone=key.backbone,
            family=job.spec.family, paper_names=list(job.spec.paper_names), seed=key.seed,
            recipe={**self.recipe.to_dict(), "seed": key.seed}, recipe_hash=key.recipe_hash,
            settings=self.options.settings(), img_size=self.suite.img_size, num_classes=self.suite.num_classes,
            epochs=self.recipe.epochs, params=job.params, flops=job.flops, host=socket.gethostname(),
            device_name=device_name(self.options.device), torch_version=torch.__version__,
            vbench_version=__version__, status="running", error=None, ended_at=None,
        )
        history = checkpoint["history"] if checkpoint else []
        unfinished = [] if self.options.force else self.store.find_runs(key, ("running", "interrupted", "failed"))
        if checkpoint and checkpoint.get("run_id") in [run.id for run in unfinished]:
            run_id = checkpoint["run_id"]
        elif unfinished:
            run_id = unfinished[0].id
        else:
            return self.store.start_run(**fields, epochs_done=0)
        self.store.replace_epochs(run_id, history, **fields, epochs_done=len(history))
        return run_id

    def _finish(self, outcome: RunOutcome, status: str, error: str | None) -> None:
        outcome.status, outcome.error = status, error
        try:
            self.store.finish_run(outcome.run_id, status, error=error)
        except Exception as exc:  # the store itself failing must not hide the first error
            self._log(f"[red]could not record run {outcome.run_id} as {status}: {exc}[/red]")

    def _advance_overall(self, epochs: int) -> None:
        self.progress.advance(self.overall, epochs)

    def _train(self, job: Job, key: RunKey, run_id: int, checkpoint: dict | None, path: Path,
               outcome: RunOutcome, label: str) -> None:
        options, recipe, device = self.options, self.recipe, self.options.device
        session_start = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        torch.manual_seed(job.seed)
        model = build_model(job.spec, self.suite).to(device)
        optimizer = make_optimizer(model, recipe)
        scheduler = make_scheduler(optimizer, recipe, self.steps_per_epoch)
        scaler = torch.amp.GradScaler("cuda", enabled=options.amp_active and _amp_dtype(options) == torch.float16)
        history: list[dict] = []
        start_epoch, prior_wall, train_images, train_time = 1, 0.0, 0, 0.0
        if checkpoint:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            if checkpoint.get("scaler"):
                scaler.load_state_dict(checkpoint["scaler"])
            history = list(checkpoint["history"])
            start_epoch = checkpoint["epoch"] + 1
            prior_wall = checkpoint["wall_time_s"]
            train_images, train_time = checkpoint["train_images"], checkpoint["train_time_s"]
        memory = checkpoint.get("peak_memory_bytes") if checkpoint else None
        self._advance_overall(start_epoch - 1)
        train_model = torch.compile(model) if options.compile else model
        autocast = (lambda: torch.autocast("cuda", dtype=_amp_dtype(options))) if options.amp_active else nullcontext

        for epoch in range(start_epoch, recipe.epochs + 1):
            metrics = self._train_epoch(train_model, optimizer, scheduler, scaler, autocast, job, epoch, label)
            top1, top5 = evaluate(train_model, self.recipe_impl, self.data.test_images, self.data.test_labels, autocast)
            metrics.update(top1=top1, top5=top5)
            history.append(metrics)
            train_images += metrics.pop("_images")
            train_time += metrics.pop("_train_time")
            wall = prior_wall + time.perf_counter() - session_start
            memory, memory_kind = peak_memory(device)
            memory = max(memory, (checkpoint or {}).get("peak_memory_bytes") or 0)
            save_checkpoint(path, {
                "format": CHECKPOINT_FORMAT, "key": dataclasses.asdict(key), "run_id": run_id, "epoch": epoch,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None, "history": history,
                "train_images": train_images, "train_time_s": train_time, "wall_time_s": wall,
                "peak_memory_bytes": memory, "recipe": recipe.to_dict(), "threads": torch.get_num_threads(),
            })
            images_per_s = train_images / train_time if train_time > 0 else None
            self.store.add_epoch(run_id, metrics, epochs_done=epoch, top1=top1, top5=top5,
                                 train_images_per_s=images_per_s, peak_memory_bytes=memory,
                                 peak_memory_kind=memory_kind, wall_time_s=wall)
            self._advance_overall(1)
            self._log(f"{label} epoch {epoch}/{recipe.epochs}: loss {metrics['train_loss']:.4f} "
                      f"acc {metrics['train_acc']:.2f} top-1 {top1:.2f} top-5 {top5:.2f} "
                      f"({metrics['images_per_s']:.0f} img/s)")
        final = history[-1]
        outcome.top1, outcome.top5 = final["top1"], final["top5"]
        outcome.images_per_s = train_images / train_time if train_time > 0 else None
        outcome.peak_memory_bytes = memory
        outcome.wall_time_s = prior_wall + time.perf_counter() - session_start
        outcome.status = "done"
        self.store.finish_run(run_id, "done", top1=outcome.top1, top5=outcome.top5, epochs_done=len(history),
                              train_images_per_s=outcome.images_per_s, wall_time_s=outcome.wall_time_s)

    def _train_epoch(self, model, optimizer, scheduler, scaler, autocast, job: Job, epoch: int, label: str) -> dict:
        recipe, device = self.recipe, self.options.device
        torch.manual_seed(epoch_seed(job.seed, epoch))
        model.train()
        # Running sums stay on the device; they are read (one sync) only every `sync_every` steps.
        sync_every = 1 if device.type == "cpu" else 25
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct_sum = torch.zeros((), device=device, dtype=torch.float64)
        seen = 0
        self.progress.reset(self.epoch_bar, total=self.steps_per_epoch, description=f"{label} epoch {epoch}", stats="")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        first_step = (epoch - 1) * self.steps_per_epoch
        step = 0
        for step, batch in enumerate(self.recipe_impl.train_batches(self.data.train_images, self.data.train_labels,
                                                                    job.seed, epoch), start=1):
            scheduler.step_update(first_step + step - 1)
            with autocast():
                logits = model(batch.x)
            loss = _mixed_loss(logits.float(), batch, recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            size = len(batch.y_a)
            seen += size
            loss_sum += loss.detach().double() * size
            predicted = logits.detach().argmax(dim=-1)
            correct_sum += (batch.lam * (predicted == batch.y_a).double().sum()
                            + (1.0 - batch.lam) * (predicted == batch.y_b).double().sum())
            if step % sync_every == 0 or step == self.steps_per_epoch:
                self._check_and_show(loss_sum, correct_sum, seen, optimizer, start, epoch, step)
            else:
                self.progress.advance(self.epoch_bar)
        if step == 0:
            raise VbenchError("the recipe yielded no training batch")
        self._check_and_show(loss_sum, correct_sum, seen, optimizer, start, epoch, step, advance=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        return {
            "epoch": epoch, "train_loss": float(loss_sum) / seen, "train_acc": 100.0 * float(correct_sum) / seen,
            "lr": optimizer.param_groups[0]["lr"], "images_per_s": seen / elapsed, "time_s": elapsed,
            "_images": seen, "_train_time": elapsed,
        }

    def _check_and_show(self, loss_sum, correct_sum, seen, optimizer, start, epoch, step, advance: bool = True) -> None:
        loss = float(loss_sum) / seen
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"non-finite training loss ({loss}) in epoch {epoch} by step {step}")
        rate = seen / max(time.perf_counter() - start, 1e-9)
        stats = (f"loss {loss:.4f} acc {100.0 * float(correct_sum) / seen:.2f} "
                 f"lr {optimizer.param_groups[0]['lr']:.2e} {rate:.0f} img/s")
        if advance:
            self.progress.update(self.epoch_bar, completed=step, stats=stats)
        else:
            self.progress.update(self.epoch_bar, stats=stats)


def _mixed_loss(logits, batch, label_smoothing: float):
    from vbench.augment import mixed_cross_entropy

    return mixed_cross_entropy(logits, batch, label_smoothing)


# --- summary ---------------------------------------------------------------------------------------
def summary_table(suite_name: str, outcomes: Iterable[RunOutcome]) -> Table:
    table = Table(title=f"vbench run: {suite_name}")
    for column in ("run", "backbone", "seed", "status", "top-1", "top-5", "params", "FLOPs", "img/s", "peak mem",
                   "wall"):
        table.add_column(column, justify="left" if column in ("backbone", "status") else "right")
    colours = {"done": "green", "skipped": "cyan", "failed": "red", "interrupted": "yellow"}
    for o in outcomes:
        table.add_row(
            str(o.run_id or "-"), o.backbone, str(o.seed), f"[{colours.get(o.status, 'white')}]{o.status}[/]",
            _num(o.top1), _num(o.top5), _num(o.params / 1e6 if o.params else None, "M"),
            _num(o.flops / 1e6 if o.flops else None, "M"), _num(o.images_per_s, digits=0),
            _num(o.peak_memory_bytes / 2**20 if o.peak_memory_bytes else None, " MiB", 0),
            _num(o.wall_time_s, " s", 1),
        )
    return table


def _num(value: Any, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"
