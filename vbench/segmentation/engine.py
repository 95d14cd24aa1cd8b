"""``vbench run`` for segmentation suites: one run per (backbone, seed) under the suite's head.

Every evaluation (at the iterations the suite lists) becomes a row of the ``epochs`` table, the
iteration standing for the epoch number and aAcc/mIoU/mAcc in its ``metrics`` column; the run row
holds the last evaluation's metrics, and params/FLOPs of the whole segmentor at the suite's crop.
A finished run of the same (suite, backbone, seed, recipe) is skipped unless ``--force``; an
unfinished one resumes from its checkpoint (see ``train_segmentor``).
"""

from __future__ import annotations

import dataclasses
import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from vbench import __version__, registry
from vbench.errors import VbenchError
from vbench.segmentation.build import resolve_segmentation_backbone
from vbench.segmentation.recipe import SegmentationSuite
from vbench.segmentation.report import HEAD_NAMES
from vbench.segmentation.run import segmentation_datasets, segmentor_size, suite_segmentor
from vbench.segmentation.train import Evaluation, train_segmentor
from vbench.store import RunKey, Store

TASK = "segmentation"


@dataclass
class SegJob:
    spec: registry.BackboneSpec
    seed: int
    size: dict


@dataclass
class SegOutcome:
    backbone: str
    seed: int
    status: str  # done | failed | interrupted | skipped
    run_id: int | None = None
    metrics: dict | None = None
    params: int | None = None
    flops: int | None = None
    wall_time_s: float | None = None
    error: str | None = None


def parse_segmentation_backbones(text: str) -> list[registry.BackboneSpec]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise VbenchError("--backbones is empty; give comma-separated names (see `vbench list backbones`)")
    specs: list[registry.BackboneSpec] = []
    for name in names:
        spec = resolve_segmentation_backbone(name)   # classification-only or unknown -> VbenchError
        if spec.name not in [s.name for s in specs]:
            specs.append(spec)
    return specs


def plan_segmentation_jobs(suite: SegmentationSuite, specs: list[registry.BackboneSpec], seeds: list[int],
                           console: Console | None = None) -> list[SegJob]:
    """Build every segmentor once (bad sizes fail here, before the store is touched) and measure it."""
    jobs = []
    status = console.status("building and measuring the segmentors...") if console else nullcontext()
    with status:
        for spec in specs:
            try:
                segmentor = suite_segmentor(suite, spec.name)
            except VbenchError:
                raise
            except Exception as exc:  # a backbone that cannot take this crop is bad input, not a crash
                raise VbenchError(f"segmentor {spec.name!r} + {suite.recipe.head} cannot be built at crop "
                                  f"{suite.crop_size}: {type(exc).__name__}: {exc}") from None
            size = segmentor_size(segmentor, suite.img_size)
            jobs += [SegJob(spec, seed, size) for seed in seeds]
    return jobs


def checkpoint_path(store: Store, key: RunKey) -> Path:
    from vbench.train import checkpoint_path as classification_path

    return classification_path(store, key).with_suffix(".seg.pt")


def evaluation_row(evaluation: Evaluation, batch_size: int) -> dict:
    """One ``epochs`` row: the iteration as the epoch, the scores in ``metrics``."""
    seconds = evaluation.train_seconds
    return {"epoch": evaluation.iteration, "train_loss": evaluation.train_loss, "lr": evaluation.lr,
            "time_s": seconds, "images_per_s": evaluation.iteration * batch_size / seconds if seconds > 0 else None,
            "metrics": {**evaluation.scores.as_dict(), "eval_seconds": evaluation.eval_seconds}}


class SegmentationEngine:
    def __init__(self, store: Store, suite: SegmentationSuite, device: torch.device, data_root=None,
                 force: bool = False, console: Console | None = None):
        from vbench.train import recipe_key_hash

        self.store, self.suite, self.device, self.force = store, suite, device, force
        self.console = console or Console()
        self.recipe_hash = recipe_key_hash(suite.recipe)
        self.datasets = segmentation_datasets(suite, data_root)

    def _log(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def run_all(self, jobs: list[SegJob]) -> list[SegOutcome]:
        return [self.run_job(job) for job in jobs]

    def run_job(self, job: SegJob) -> SegOutcome:
        key = RunKey(self.suite.name, job.spec.name, job.seed, self.recipe_hash)
        label = f"{job.spec.name} {HEAD_NAMES.get(self.suite.recipe.head, self.suite.recipe.head)} seed {job.seed}"
        path = checkpoint_path(self.store, key)
        if not self.force:
            done = self.store.find_runs(key, ("done",))
            if done:
                run = done[0]
                self._log(f"{label}: already done (run {run.id}); skipped, --force reruns it")
                return SegOutcome(job.spec.name, job.seed, "skipped", run.id, run.metrics, run.params, run.flops,
                                  run.wall_time_s)
        elif path.exists():
            path.unlink()
        run_id = self._open_run(key, job, resumed=path.exists())
        outcome = SegOutcome(job.spec.name, job.seed, "running", run_id, params=job.size["params"],
                             flops=job.size["flops"])
        try:
            self._train(job, run_id, path, outcome, label)
        except KeyboardInterrupt:
            self._finish(outcome, "interrupted", "interrupted by the user (Ctrl-C)")
            self._log(f"{label}: interrupted; the same command resumes it from its last checkpoint")
            raise
        except Exception as exc:  # this run fails; the suite goes on
            self._finish(outcome, "failed", f"{type(exc).__name__}: {exc}")
            self._log(f"[red]{label}: failed: {type(exc).__name__}: {exc}[/red]")
        return outcome

    def _open_run(self, key: RunKey, job: SegJob, resumed: bool) -> int:
        """Reuse the newest unfinished row of this key (its evaluations are rewritten from the checkpoint)."""
        from vbench.train import device_name

        recipe = self.suite.recipe
        fields = dict(
            task=TASK, suite=key.suite, dataset=self.suite.kind, backbone=key.backbone, family=job.spec.family,
            paper_names=list(job.spec.paper_names), seed=key.seed, recipe={**recipe.to_dict(), "seed": key.seed},
            recipe_hash=key.recipe_hash, settings={"device": str(self.device), "head": recipe.head,
                                                  "threads": torch.get_num_threads()},
            img_size=self.suite.img_size, num_classes=self.suite.num_classes, epochs=recipe.iterations,
            params=job.size["params"], flops=job.size["flops"], host=socket.gethostname(),
            device_name=device_name(self.device), torch_version=torch.__version__, vbench_version=__version__,
            status="running", error=None, ended_at=None,
            metrics={"head": recipe.head, "params_without_aux": job.size["params_without_aux"],
                     "flops_complete": job.size["flops_complete"]},
        )
        unfinished = [] if self.force else self.store.find_runs(key, ("running", "interrupted", "failed"))
        if not unfinished:
            return self.store.start_run(**fields, epochs_done=0)
        run_id = unfinished[0].id
        self.store.replace_epochs(run_id, [], **fields, epochs_done=0)
        if resumed:
            self._log(f"{key.backbone} seed {key.seed}: resuming run {run_id} from its checkpoint")
        return run_id

    def _train(self, job: SegJob, run_id: int, path: Path, outcome: SegOutcome, label: str) -> None:
        from vbench.train import peak_memory

        recipe = dataclasses.replace(self.suite.recipe, seed=job.seed)
        train_ds, val_ds = self.datasets
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        torch.manual_seed(recipe.seed)
        segmentor = suite_segmentor(self.suite, job.spec.name)
        base_metrics = {"head": recipe.head, "params_without_aux": job.size["params_without_aux"],
                        "flops_complete": job.size["flops_complete"]}

        def record(evaluation: Evaluation) -> None:
            row = evaluation_row(evaluation, recipe.batch_size)
            self.store.add_epoch(run_id, row, epochs_done=evaluation.iteration)
            scores = evaluation.scores
            self._log(f"{label}: iteration {evaluation.iteration}: aAcc {scores.aAcc:.2f} mIoU {scores.mIoU:.2f} "
                      f"mAcc {scores.mAcc:.2f} loss {evaluation.train_loss:.3f}")

        evaluations = train_segmentor(segmentor, train_ds, val_ds, recipe, self.device, on_eval=record,
                                      description=label, checkpoint=path)
        if not evaluations:
            raise VbenchError(f"the schedule evaluated nothing (eval_at {recipe.eval_at}, {recipe.iterations} iterations)")
        last = evaluations[-1]
        memory, memory_kind = peak_memory(self.device)
        rows = [evaluation_row(e, recipe.batch_size) for e in evaluations]
        outcome.metrics = {**base_metrics, "iteration": last.iteration, **last.scores.as_dict()}
        outcome.wall_time_s = time.perf_counter() - started
        # the checkpoint's evaluations are the whole history, also of a resumed run
        self.store.replace_epochs(run_id, rows, epochs_done=last.iteration, metrics=outcome.metrics,
                                  train_images_per_s=rows[-1]["images_per_s"], peak_memory_bytes=memory,
                                  peak_memory_kind=memory_kind, wall_time_s=outcome.wall_time_s)
        self._finish(outcome, "done", None)

    def _finish(self, outcome: SegOutcome, status: str, error: str | None) -> None:
        outcome.status, outcome.error = status, error
        try:
            self.store.finish_run(outcome.run_id, status, error=error)
        except Exception as exc:  # the store failing must not hide the first error
            self._log(f"[red]could not record run {outcome.run_id} as {status}: {exc}[/red]")


def summary_table(suite: SegmentationSuite, outcomes: list[SegOutcome]) -> Table:
    from vbench.segmentation.report import flops_text, params_text

    head = HEAD_NAMES.get(suite.recipe.head, suite.recipe.head)
    table = Table(title=f"vbench run: {suite.name} ({head})")
    for column in ("run", "backbone", "seed", "status", "iteration", "aAcc", "mIoU", "mAcc", "params", "FLOPs", "wall"):
        table.add_column(column, justify="left" if column in ("backbone", "status") else "right")
    colours = {"done": "green", "skipped": "cyan", "failed": "red", "interrupted": "yellow"}
    for o in outcomes:
        m = o.metrics or {}
        number = lambda key: f"{m[key]:.2f}" if m.get(key) is not None else "-"  # noqa: E731
        table.add_row(str(o.run_id or "-"), o.backbone, str(o.seed), f"[{colours.get(o.status, 'white')}]{o.status}[/]",
                      str(m.get("iteration", "-")), number("aAcc"), number("mIoU"), number("mAcc"),
                      params_text(o.params) or "-", flops_text(o.flops) or "-",
                      f"{o.wall_time_s:.1f} s" if o.wall_time_s is not None else "-")
    return table
