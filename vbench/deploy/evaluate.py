"""``vbench deploy``: the final weights of a suite's finished runs on each runtime and precision.

For each run the fp32 model is loaded once; PyTorch eager fp32 gives the reference: its top-1 on the whole test
split (``top1_torch``) and the logits of the first test batch. Then, per runtime and precision (in that order),
the runtime prepares the model (exports it, quantises it, compiles it), and:

- ``max_abs_diff``: the largest absolute difference of its logits from PyTorch's on the first test batch;
- ``top1``: its top-1 (%) on the whole test split, in batches of the largest batch size (the last batch padded
  with copies of its last image, whose outputs are dropped, so that a static graph serves every batch);
- at each batch size: latency at batch 1 (p50/p90/p99 of single queries) or throughput at a larger one
  (``vbench.deploy.latency``).

Each result is a row of the store's ``evaluations`` table, kind ``deploy``, written as soon as it is measured
(an interrupted command continues where it stopped). Its condition is the key
``<runtime>/<precision>/b<batch size>/t<threads>/<exporter or eager>/<hardware id>`` (``Setting``), so results of
other machines, thread counts or exporters are kept beside each other. A combination the runtime cannot run here
is stored with ``status`` ``unsupported`` and the one-line reason; one that fails (an export that breaks) with
``status`` ``failed`` and its reason, and is tried again by the next command.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console

from vbench.data.augment import intra_op_threads
from vbench.deploy.export import EXPORTERS, check_exporter, export_onnx
from vbench.deploy.latency import MIN_QUERIES, MIN_SECONDS, Predictor, measure
from vbench.deploy.quantize import calibration_set
from vbench.deploy.runtimes import INSTALL_HINT, PRECISIONS, RUNTIMES, Subject, torch_predictor
from vbench.engine.evaluate import finished_runs, progress_bar, select_runs
from vbench.engine.hardware import Hardware, fingerprint
from vbench.engine.precision import resolve_device
from vbench.errors import VbenchError, one_line
from vbench.models import registry
from vbench.parse import parse_list, positive_int
from vbench.store.artifacts import load_weights, weights_path
from vbench.tasks.classification import ClassificationTask

KIND = "deploy"
EAGER = "eager"  # the exporter field of the runtimes that run the module itself
DEFAULT_BATCH_SIZES = "1,64"
DEFAULT_CALIBRATION_IMAGES = 256
DONE = ("ok", "unsupported")  # results a later command keeps; "failed" is tried again


@dataclass(frozen=True)
class Setting:
    """What a deployment result is measured under: its key in the store, with the run."""

    runtime: str
    precision: str
    batch_size: int
    threads: int
    exporter: str  # "dynamo" or "torchscript" for the runtimes of the ONNX export, else "eager"
    hardware: str  # Hardware.id

    @property
    def condition(self) -> str:
        return "/".join([self.runtime, self.precision, f"b{self.batch_size}", f"t{self.threads}", self.exporter,
                         self.hardware])

    @classmethod
    def parse(cls, condition: str) -> "Setting":
        runtime, precision, batch, threads, exporter, hardware = condition.split("/")
        return cls(runtime, precision, int(batch[1:]), int(threads[1:]), exporter, hardware)


@dataclass(frozen=True)
class DeployRequest:
    runtimes: tuple[str, ...]
    precisions: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    threads: int
    exporter: str = "dynamo"
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    queries: int = MIN_QUERIES
    throughput_seconds: float = MIN_SECONDS
    device: str = "auto"

    @property
    def largest_batch(self) -> int:
        return max(self.batch_sizes)


@dataclass
class DeployOutcome:
    hardware: Hardware
    measured: int = 0
    kept: int = 0  # in the store from an earlier command
    unsupported: int = 0
    failures: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # what this command stored, for its table
    runs: list = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def parse_request(runtimes: str | None = None, precisions: str | None = None, batch_sizes: str | None = None,
                  threads: int | None = None, exporter: str = "dynamo",
                  calibration_images: int = DEFAULT_CALIBRATION_IMAGES, queries: int = MIN_QUERIES,
                  throughput_seconds: float = MIN_SECONDS, device: str = "auto") -> DeployRequest:
    """The options of ``vbench deploy``, checked (names, numbers, installed runtimes) before any work."""
    names = [RUNTIMES.resolve(name) for name in parse_list(runtimes, "--runtimes")] if runtimes is not None \
        else list(RUNTIMES.names())
    if len(set(names)) != len(names):
        raise VbenchError(f"--runtimes names {next(n for n in names if names.count(n) > 1)!r} twice; give each once")
    chosen_precisions = parse_list(",".join(PRECISIONS) if precisions is None else precisions, "--precisions",
                                   choices=PRECISIONS, example="fp32,int8")
    sizes = parse_list(DEFAULT_BATCH_SIZES if batch_sizes is None else batch_sizes, "--batch-sizes", positive_int,
                       example="1,64")
    check_exporter(exporter)
    for option, value, least in (("--threads", threads, 1), ("--calibration-images", calibration_images, 1),
                                 ("--queries", queries, MIN_QUERIES)):
        if value is not None and value < least:
            raise VbenchError(f"{option} must be at least {least}, got {value}")
    for name in names:
        missing = RUNTIMES.get(name).missing(chosen_precisions, exporter)
        if missing:
            raise VbenchError(f"runtime {name!r} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                              f"not installed; {INSTALL_HINT}")
    if not throughput_seconds > 0:
        raise VbenchError(f"--throughput-seconds must be more than 0, got {throughput_seconds}")
    resolve_device(device)
    return DeployRequest(tuple(names), tuple(chosen_precisions), tuple(sorted(sizes)),
                         threads or torch.get_num_threads(), exporter, calibration_images, queries, throughput_seconds,
                         device)


def deploy(store, suite, request: DeployRequest, backbones: list[str] | None = None, seeds: list[int] | None = None,
           data_root=None, limit: int | None = None, console: Console | None = None) -> DeployOutcome:
    if suite.task != "classification":
        raise VbenchError(f"suite {suite.name!r} is a {suite.task} suite; vbench deploy measures classification models")
    device = resolve_device(request.device)
    candidates = finished_runs(store, suite, backbones, seeds, purpose="deploy")
    task = ClassificationTask(suite, torch.device("cpu"), data_root=data_root, limit=limit)
    data = task.load_data()
    runs, skipped = select_runs(store, candidates, data.identity, purpose="deployed")
    outcome = DeployOutcome(fingerprint(device), runs=runs, skipped=skipped)
    done = {(e.run_id, e.condition) for e in store.evaluations(KIND, [run.id for run in runs])
            if (e.metrics or {}).get("status") in DONE}
    images, labels = normalized(task, task.data.test_images, task.data.test_labels)
    console = console or Console()
    with intra_op_threads(request.threads), tempfile.TemporaryDirectory(prefix="vbench-deploy-") as workdir, \
            progress_bar(console) as progress:
        bar = progress.add_task(f"{suite.name}: deploy",
                                total=len(runs) * len(request.runtimes) * len(request.precisions))
        for run in runs:
            todo = _todo(run, request, outcome.hardware, done)
            outcome.kept += len(request.runtimes) * len(request.precisions) * len(request.batch_sizes) - \
                sum(len(settings) for settings in todo.values())
            progress.advance(bar, len(request.runtimes) * len(request.precisions) - len(todo))
            if not todo:
                continue
            try:
                deployment = RunDeployment(store, task, run, request, outcome, device, Path(workdir), images, labels)
            except Exception as exc:  # noqa: BLE001 - a model that cannot be built or loaded: the other runs go on
                _fail_run(store, run, todo, outcome, device, one_line(exc, 300))
                progress.advance(bar, len(todo))
                continue
            for (runtime, precision), settings in todo.items():
                progress.update(bar, description=f"{run.backbone} seed {run.seed}: {runtime} {precision}")
                deployment.measure(runtime, precision, settings)
                progress.advance(bar)
    return outcome


def normalized(task: ClassificationTask, images_u8: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as the task's evaluation sees them (centre images, normalised), float32 on the CPU."""
    pairs = list(task.batches.eval_batches(images_u8, labels))
    return torch.cat([x for x, _ in pairs]).float().cpu(), torch.cat([y for _, y in pairs]).cpu()


def _todo(run, request: DeployRequest, hardware: Hardware, done: set) -> dict[tuple[str, str], list[Setting]]:
    """``{(runtime, precision): [the settings not measured yet, one per batch size]}``."""
    todo = {}
    for runtime in request.runtimes:
        exporter = request.exporter if RUNTIMES.get(runtime).exported else EAGER
        for precision in request.precisions:
            settings = [Setting(runtime, precision, size, request.threads, exporter, hardware.id)
                        for size in request.batch_sizes]
            settings = [s for s in settings if (run.id, s.condition) not in done]
            if settings:
                todo[(runtime, precision)] = settings
    return todo


def _fail_run(store, run, todo: dict, outcome: DeployOutcome, device: torch.device, reason: str) -> None:
    for (runtime, precision), settings in todo.items():
        for setting in settings:
            store_result(store, run, setting, outcome, device, {"status": "failed", "reason": reason})
    outcome.failures.append(f"{run.backbone} (run {run.id}): {reason}")


def store_result(store, run, setting: Setting, outcome: DeployOutcome, device: torch.device, result: dict) -> None:
    """One result in the store (at once) and in the command's table."""
    metrics = {"runtime": setting.runtime, "precision": setting.precision, "batch_size": setting.batch_size,
               "threads": setting.threads, "exporter": setting.exporter, "hardware": setting.hardware,
               "hardware_text": outcome.hardware.text(), "device": str(device), **result}
    store.put_evaluation(run.id, KIND, setting.condition, metrics)
    outcome.rows.append({"run_id": run.id, "backbone": run.backbone, "seed": run.seed, "condition": setting.condition,
                         **metrics})


class RunDeployment:
    """One run's model on the runtimes: its PyTorch reference, and its export and calibration images made once."""

    def __init__(self, store, task, run, request: DeployRequest, outcome: DeployOutcome, device: torch.device,
                 workdir: Path, images: torch.Tensor, labels: torch.Tensor):
        self.store, self.task, self.run, self.request, self.outcome = store, task, run, request, outcome
        self.device, self.images, self.labels = device, images, labels
        spec = registry.get_backbone(run.backbone)
        model = load_weights(weights_path(store, run.id), task.build_model(spec)).eval()
        self.subject = Subject(f"run-{run.id}", model, task.suite.img_size, device, request.threads,
                               spec.variant("classification").recipe_kind == "transformer", workdir,
                               once(self._export), once(self._calibration))
        reference = torch_predictor(model.to(device), device, "fp32")
        self.top1_torch, self.reference_logits = evaluate_predictor(reference, images, labels, request.largest_batch)
        self.evaluated = {("torch", "fp32"): (self.top1_torch, self.reference_logits)}  # the same predictor

    def _export(self):
        return export_onnx(self.subject.model, self.subject.img_size,
                           self.subject.workdir / f"{self.subject.name}-{self.request.exporter}.onnx",
                           self.request.exporter)

    def _calibration(self):
        return calibration_set(self.task.data.train_images, lambda x: normalized(self.task, x, torch.zeros(len(x)))[0],
                               self.request.calibration_images)

    def measure(self, runtime_name: str, precision: str, settings: list[Setting]) -> None:
        runtime = RUNTIMES.get(runtime_name)
        reason = runtime.unsupported(precision, self.device, self.outcome.hardware)
        if reason:
            for setting in settings:
                self._store(setting, {"status": "unsupported", "reason": reason})
            self.outcome.unsupported += len(settings)
            return
        try:
            started = time.perf_counter()
            predict = runtime.prepare(self.subject, precision)
            top1, logits = self.evaluated.get((runtime_name, precision)) or \
                evaluate_predictor(predict, self.images, self.labels, self.request.largest_batch)
            common = {"status": "ok", "runtime_version": runtime.version(), "top1": top1,
                      "top1_torch": self.top1_torch,
                      "max_abs_diff": float((logits - self.reference_logits).abs().max()),
                      "prepare_and_evaluate_s": time.perf_counter() - started, "test_images": len(self.labels),
                      "eval_batch_size": self.request.largest_batch}
            if precision == "int8":
                common["calibration"] = self.subject.calibration().record
            for setting in settings:
                timing = measure(predict, self.images, setting.batch_size, self.request.queries,
                                 self.request.throughput_seconds)
                self._store(setting, {**common, **timing.metrics()})
                self.outcome.measured += 1
        except Exception as exc:  # noqa: BLE001 - this combination fails; the others go on
            reason = one_line(exc, 300)
            for setting in settings:
                if (self.run.id, setting.condition) not in {(r["run_id"], r["condition"]) for r in self.outcome.rows}:
                    self._store(setting, {"status": "failed", "reason": reason})
            self.outcome.failures.append(f"{self.run.backbone} (run {self.run.id}) on {runtime_name} {precision}: "
                                         f"{reason}")

    def _store(self, setting: Setting, result: dict) -> None:
        store_result(self.store, self.run, setting, self.outcome, self.device, result)


def evaluate_predictor(predict: Predictor, images: torch.Tensor, labels: torch.Tensor,
                       batch_size: int) -> tuple[float, torch.Tensor]:
    """Top-1 (%) of ``predict`` over ``images`` in batches of ``batch_size`` (the last one padded), and the logits
    of the first batch."""
    hits, first = 0, None
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        real = len(batch)
        if real < batch_size:
            batch = torch.cat([batch, batch[-1:].expand(batch_size - real, *batch.shape[1:])])
        logits = predict(batch.contiguous())[:real]
        hits += int((logits.argmax(dim=-1) == labels[start:start + real]).sum())
        first = logits if first is None else first
    return 100.0 * hits / len(labels), first


def once(make: Callable):
    """``make()`` the first time, its value (or its exception) every later time."""
    memo: dict = {}

    def get():
        if "value" not in memo and "error" not in memo:
            try:
                memo["value"] = make()
            except Exception as exc:
                memo["error"] = exc
        if "error" in memo:
            raise memo["error"]
        return memo["value"]

    return get


__all__ = ["EAGER", "EXPORTERS", "KIND", "DeployOutcome", "DeployRequest", "Setting", "deploy", "parse_request"]
