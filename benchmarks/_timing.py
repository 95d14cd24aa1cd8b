"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class ArgumentParser(argparse.ArgumentParser):
    """A benchmark's options: a bad one is one line on stderr and exit code 2, as everywhere in vbench."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def argument_parser(doc: str) -> ArgumentParser:
    """The parser of the benchmark whose module docstring is ``doc``."""
    return ArgumentParser(description=doc.splitlines()[0])
