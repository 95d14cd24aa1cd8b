"""Checkpoints that belong to one store and one run: atomic, fsynced, verified before they replace
the previous one, and validated on load.

A run's checkpoint is ``run-<id>.pt`` in the store's own checkpoint folder (named after the store's
identity, see ``Store.artifact_dir``), with the previous generation kept as ``run-<id>.prev.pt``. Each
records the store identity, the run id and the run key; a file that is truncated, unreadable or not
this run's is skipped with a one-line warning, and the run continues from the newest valid one (or
from scratch when none is left).
"""

from __future__ import annotations

import errno
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vbench.errors import VbenchError

FORMAT = 2


@dataclass
class Checkpoints:
    folder: Path
    store_id: str
    warn: Callable[[str], None] = print

    def path(self, run_id: int) -> Path:
        return self.folder / f"run-{run_id}.pt"

    def previous(self, run_id: int) -> Path:
        return self.folder / f"run-{run_id}.prev.pt"

    def save(self, run_id: int, key: dict, state: dict) -> None:
        """Write, fsync and verify the new checkpoint, then make it current and the old one previous."""
        # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
        import torch

        buffer = io.BytesIO()
        torch.save({**state, "format": FORMAT, "store_id": self.store_id, "run_id": run_id, "key": key}, buffer)
        path = self.path(run_id)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_synced(temporary, buffer.getbuffer())
            torch.load(temporary, map_location="cpu", weights_only=False, mmap=True)  # readable as written
            if path.exists():
                os.replace(path, self.previous(run_id))
            os.replace(temporary, path)
            _sync_folder(self.folder)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise VbenchError(_disk_full(self.folder, len(buffer.getbuffer()))) from None
            raise
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def load(self, run_id: int, key: dict, device) -> dict | None:
        """The newest valid checkpoint of ``run_id``, or None."""
        for stale in self.folder.glob(f".run-{run_id}.pt.tmp-*"):  # left by a process killed while writing
            stale.unlink(missing_ok=True)
        for path in (self.path(run_id), self.previous(run_id)):
            if not path.exists():
                continue
            state = self._read(path, device)
            if state is None:
                continue
            if (state.get("format"), state.get("store_id"), state.get("run_id"), state.get("key")) == \
                    (FORMAT, self.store_id, run_id, key):
                return state
            self.warn(f"warning: checkpoint {path} belongs to another run or store; ignored")
        return None

    def _read(self, path: Path, device) -> dict | None:
        # lazy: imports torch: keeps `vbench --help` and `vbench list` fast
        import torch

        try:
            return torch.load(path, map_location=device, weights_only=False)
        except Exception as exc:  # noqa: BLE001 - a damaged file is skipped, never trusted
            self.warn(f"warning: checkpoint {path} cannot be read ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}); using an older one or starting over")
            return None

    def delete(self, run_id: int) -> None:
        for path in (self.path(run_id), self.previous(run_id)):
            path.unlink(missing_ok=True)


def _write_synced(path: Path, data) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _disk_full(folder: Path, needed: int) -> str:
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    return (f"the disk holding {folder} is full: a checkpoint needs {needed / 2**20:.1f} MiB and "
            f"{free / 2**20:.1f} MiB are free; free some space or point $VBENCH_ARTIFACTS at another disk")
