"""Leases on runs: a running run is held by one process (``host:pid:token``), which renews the row's heartbeat
while it trains; a holder that is gone (a dead process on this host, a heartbeat older than the lease
elsewhere) no longer holds it, and the run can be resumed by another."""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timedelta

HEARTBEAT_SECONDS = 30
LEASE_SECONDS = 120  # a running run whose heartbeat is older than this has lost its holder


def holder_alive(owner: str, heartbeat_at: datetime | None, now: datetime) -> bool:
    """Whether the process named ``owner`` (host:pid:token) still holds its run: on this host, whether that
    process exists; elsewhere, whether its heartbeat is younger than the lease."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        return process_alive(pid)
    return heartbeat_at is not None and now - heartbeat_at < timedelta(seconds=LEASE_SECONDS)


def process_alive(pid: str) -> bool:
    """Whether a process of this host with id ``pid`` exists (one of another user counts)."""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """Renews the run row's heartbeat in the background while this process trains it."""

    def __init__(self, store, run_id: int, owner: str, warn):
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


