"""Checkpoints that belong to one store and one run: atomic, fsynced, verified before they replace
the previous one, and validated on load.

A run's checkpoint is ``run-<id>.pt`` in the store's own checkpoint folder (named after the store's
identity, see ``Store.artifact_dir``), with the previous generation kept as ``run-<id>.prev.pt``. Each
records the store identity, the run id and the run key; a file that is truncated, unreadable or not
this run's is skipped with a one-line warning, and the run continues from the newest valid one (or
from scratch when none is left).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vbench.errors import one_line
from vbench.paths import atomic_path
from vbench.store.files import load_torch

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
        with atomic_path(path, sync=True, needed=len(buffer.getbuffer())) as temporary:
            temporary.write_bytes(buffer.getbuffer())
            load_torch(temporary, mmap=True)  # readable as written, by the loader that will read it
            if path.exists():
                os.replace(path, self.previous(run_id))

    def load(self, run_id: int, key: dict, device) -> dict | None:
        """The newest valid checkpoint of ``run_id``, or None. A file is read without running code (tensors and
        plain values only), and its store, run and key are checked before any of its tensors is used."""
        for stale in self.folder.glob(f".run-{run_id}.pt.*.tmp"):  # left by a process killed while writing
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
        try:
            state = load_torch(path, map_location=device, mmap=True)
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is skipped, never trusted
            self.warn(f"warning: checkpoint {path} cannot be read ({one_line(exc, 200)}); using an older one or "
                      "starting over")
            return None
        if not isinstance(state, dict):
            self.warn(f"warning: checkpoint {path} is not a vbench checkpoint; using an older one or starting over")
            return None
        return state

    def delete(self, run_id: int) -> None:
        for path in (self.path(run_id), self.previous(run_id)):
            path.unlink(missing_ok=True)
