"""torch.distributed runs: ``torchrun --nproc-per-node N -m vbench run ...``, or a SLURM job with several GPUs.

The process group comes from torch.distributed.elastic's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL on CUDA, gloo on the CPU. A distributed run is
the same training as a single-process one, up to floating-point reduction order:

- every rank draws the same global batch (the augmentation stream is a function of seed and stage)
  and trains on its contiguous share of it; DDP averages the gradients, which for a loss that is a
  mean over images equals the gradient of the global batch;
- BatchNorm sees the global batch: ``torch.nn.SyncBatchNorm`` on CUDA, ``CpuSyncBatchNorm`` on gloo;
- the training statistics (loss, accuracy, images) are summed over the ranks, so progress, stored
  metrics and throughput are global.

Rank 0 alone claims the run in the store and writes the store, checkpoints, weights, predictions and
progress; it hands its decisions (the claim, the checkpoint to resume from) to the other ranks through
``from_main``. Dropout and drop-path draw from torch's RNG, seeded per stage as in a single process:
each rank draws the masks of its own share, so those masks differ from a single process's.

Everything here is a no-op at world size 1 (``SINGLE``), which is what a plain ``vbench run`` gets.
"""

from __future__ import annotations

import atexit
import dataclasses
import io
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_reduce
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from vbench.errors import VbenchError

T = TypeVar("T")
# Ranks wait for rank 0 while it writes a checkpoint or the store (and, on a resumed run, reads the
# checkpoint); far above any of those, far below a hung job's wall time.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device):
        """This rank's device: ``cuda:LOCAL_RANK`` among the GPUs the process sees, else ``device`` itself."""
        if not self.active or device.type != "cuda":
            return device
        mine = torch.device("cuda", self.local_rank)
        torch.cuda.set_device(mine)
        return mine

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise VbenchError(f"the batch size {batch_size} does not split over {self.world_size} processes; give "
                              f"--batch-size a multiple of {self.world_size} (each process takes an equal share)")

    def shard(self, batch):
        """This rank's contiguous share of a global batch: every tensor whose first dimension is the batch
        is sliced, in dataclasses, tuples, lists and dicts alike; anything else (mixing weights) is kept."""
        if not self.active:
            return batch
        size = _batch_length(batch)
        if size is None or size % self.world_size:
            raise VbenchError(f"a training batch of {size} images does not split over {self.world_size} processes; "
                              f"give --batch-size a multiple of {self.world_size}")
        share = size // self.world_size
        return _slice(batch, size, self.rank * share, (self.rank + 1) * share)

    def wrap(self, model):
        """The model for training: BatchNorm made synchronous, then DistributedDataParallel. Parameters and
        buffers stay the same tensors, so the optimizer and ``model.state_dict()`` are unchanged."""
        if not self.active:
            return model

        # find_unused_parameters: some paper models keep parameters outside the forward (LKCA's released code
        # has an unused class token, counted in # Params); DDP would otherwise wait for their gradients forever.
        if self.backend == "nccl":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(model, device_ids=[self.local_rank], find_unused_parameters=True)
        return DistributedDataParallel(convert_cpu_sync_batchnorm(model), find_unused_parameters=True)

    def sum(self, tensor):
        """``tensor`` summed over the ranks (in place)."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def from_main(self, work: Callable[[], T], device=None) -> T:
        """Rank 0 runs ``work()``; every rank returns its result (tensors land on ``device``). An exception
        on rank 0 is raised on every rank, so that no rank waits for a collective that never comes."""
        if not self.active:
            return work()

        message: list[Any] = [None]
        if self.is_main:
            try:
                result = ("ok", work())
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
                result = ("error", exc)
            buffer = io.BytesIO()
            try:
                torch.save(result, buffer)  # torch.save: tensors keep their storage, loaded onto each rank's device
            except Exception as exc:  # noqa: BLE001 - what does not pickle still fails every rank, not just this one
                kind, value = result
                failure = RuntimeError(f"{type(value).__name__}: {value}" if kind == "error" else
                                       f"rank 0 could not hand its result to the other ranks: {exc}")
                buffer = io.BytesIO()
                torch.save(("error", failure), buffer)
                result = ("error", value if kind == "error" else failure)
            message = [buffer.getvalue()]
        dist.broadcast_object_list(message, src=0)
        if self.is_main:
            outcome, value = result
        else:
            outcome, value = torch.load(io.BytesIO(message[0]), map_location=device, weights_only=False)
        if outcome == "error":
            raise value
        return value

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


SINGLE = Distributed()


def requested() -> Distributed:
    """The rank and world size the environment asks for (torchrun, or ``export`` of submitit's
    TorchDistributedEnvironment), without starting anything."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise VbenchError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise VbenchError(f"RANK {rank} is not within WORLD_SIZE {world_size}")
    return Distributed(rank, world_size, local_rank)


def setup(device) -> Distributed:
    """Join the process group the environment describes (once per process): NCCL for CUDA, gloo for the
    CPU. World size 1 starts nothing and returns ``SINGLE``."""
    wanted = requested()
    if not wanted.active:
        return SINGLE
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(wanted.local_rank)
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        atexit.register(_leave)
    elif dist.get_backend() != backend:
        raise VbenchError(f"the process group uses {dist.get_backend()}, but device {device.type} needs {backend}")
    return dataclasses.replace(wanted, backend=backend)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _batch_length(value) -> int | None:
    if torch.is_tensor(value):
        return value.shape[0] if value.dim() > 0 else None
    if dataclasses.is_dataclass(value):
        value = [getattr(value, field.name) for field in dataclasses.fields(value)]
    elif isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            length = _batch_length(item)
            if length is not None:
                return length
    return None


def _slice(value, size: int, start: int, stop: int):
    if torch.is_tensor(value):
        return value[start:stop] if value.dim() > 0 and value.shape[0] == size else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{field.name: _slice(getattr(value, field.name), size, start, stop)
                                             for field in dataclasses.fields(value) if field.init})
    if isinstance(value, dict):
        return {key: _slice(item, size, start, stop) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_slice(item, size, start, stop) for item in value)
    return value


# --- BatchNorm over the global batch on the CPU ----------------------------------------------------
def _cpu_sync_batchnorm_class():
    """Built on first use: this module must not import torch when it is imported."""
    class CpuSyncBatchNorm(_BatchNorm):
        """BatchNorm whose training statistics are those of the global batch, on gloo process groups.

        Written here because ``torch.nn.SyncBatchNorm`` refuses CPU tensors. The per-channel sums of x
        and x^2 and the count are summed over the ranks with the autograd-aware all_reduce (whose
        backward sums the gradients of the statistics over the ranks), in float64. Running statistics
        are updated as BatchNorm does (unbiased variance, momentum or cumulative average).
        """

        def _check_input_dim(self, input):
            if input.dim() < 2:
                raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

        def forward(self, input):
            if not (self.training and dist.is_available() and dist.is_initialized()):
                return super().forward(input)
            channels = input.shape[1]
            dims = [0, *range(2, input.dim())]
            wide = input.double()
            count = torch.full((1,), float(input.numel() // channels), dtype=torch.float64)
            totals = all_reduce(torch.cat([wide.sum(dims), (wide * wide).sum(dims), count]), op=dist.ReduceOp.SUM)
            n = totals[-1]
            mean = totals[:channels] / n
            var = (totals[channels:2 * channels] / n - mean * mean).clamp_min(0)
            if self.track_running_stats:
                self._update_running_stats(mean.detach(), var.detach(), float(n.detach()))
            shape = [1, channels] + [1] * (input.dim() - 2)
            output = ((wide - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)).to(input.dtype)
            if self.affine:
                output = output * self.weight.view(shape) + self.bias.view(shape)
            return output

        @torch.no_grad()
        def _update_running_stats(self, mean, var, n: float) -> None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            unbiased = var * (n / max(n - 1.0, 1.0))
            self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
            self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)

    return CpuSyncBatchNorm


_CPU_SYNC_BATCHNORM = None


def cpu_sync_batchnorm_class():
    global _CPU_SYNC_BATCHNORM
    if _CPU_SYNC_BATCHNORM is None:
        _CPU_SYNC_BATCHNORM = _cpu_sync_batchnorm_class()
    return _CPU_SYNC_BATCHNORM


def convert_cpu_sync_batchnorm(module):
    """Every BatchNorm under ``module`` becomes a CpuSyncBatchNorm holding the same parameters and buffers
    (as ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` does for CUDA)."""
    cls = cpu_sync_batchnorm_class()
    converted = module
    if isinstance(module, _BatchNorm) and not isinstance(module, (cls, torch.nn.SyncBatchNorm)):
        converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.training = module.training
    for name, child in module.named_children():
        converted.add_module(name, convert_cpu_sync_batchnorm(child))
    return converted
