"""``vbench run --tensorboard DIR``: every recorded stage's metrics as TensorBoard scalars, through torch's own
``SummaryWriter`` (the ``tensorboard`` extra), one event folder per run: ``DIR/<suite>/<backbone>/seed<seed>-run<id>``.

It is a Runner observer: called with (run_id, job, stage, row) after each stage is recorded, so the store
stays the record and TensorBoard a view of it. Scalars: ``train/<metric>`` for the training means,
``eval/<metric>`` for the task's metrics, ``lr`` and ``images_per_s``; the step is the epoch or iteration.
"""

from __future__ import annotations

from pathlib import Path

from vbench.errors import VbenchError
from vbench.paths import check_output

INSTALL_HINT = "pip install 'vbench[tensorboard]' (or pip install tensorboard)"


def check_log_dir(folder: str) -> Path:
    """The folder, after checking that TensorBoard is installed and the folder can be written (nothing created)."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
    except ImportError:
        raise VbenchError(f"--tensorboard needs the tensorboard package; {INSTALL_HINT}") from None
    return check_output(folder, "--tensorboard", folder=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class TensorBoardLog:
    def __init__(self, folder: str, planned):
        self.folder = check_log_dir(folder)
        self.suite = planned.suite
        self.metric_names = {metric.name for metric in planned.suite.task_info.metrics}
        self.writers: dict[int, object] = {}

    def run_dir(self, run_id: int, job) -> Path:
        return self.folder / _safe(self.suite.name) / _safe(job.spec.name) / f"seed{job.seed}-run{run_id}"

    def __call__(self, run_id: int, job, stage, row: dict) -> None:
        # lazy: the optional tensorboard extra, only with --tensorboard
        from torch.utils.tensorboard import SummaryWriter

        if run_id not in self.writers:
            self.writers[run_id] = SummaryWriter(log_dir=str(self.run_dir(run_id, job)))
        writer = self.writers[run_id]
        for name, value in row.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if name in self.metric_names:
                tag = f"eval/{name}"
            elif name.startswith("train_"):
                tag = f"train/{name.removeprefix('train_')}"
            elif name in ("lr", "images_per_s"):
                tag = name
            else:
                continue
            writer.add_scalar(tag, value, global_step=stage.label)
        writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
