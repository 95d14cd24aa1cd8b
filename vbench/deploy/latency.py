"""Latency and throughput of a predictor, measured as MLPerf's single-stream and offline scenarios do:

- latency: single queries (batch 1) one after the other, each timed on its own, after a warm-up; p50, p90
  (MLPerf's single-stream figure) and p99 of at least ``MIN_QUERIES`` queries, nearest-rank percentiles;
- throughput: whole batches back to back after a warm-up, images/s over all of them, for at least
  ``MIN_SECONDS`` and ``MIN_CALLS`` batches; the per-batch latencies are kept as well.

A predictor takes a float32 CPU batch and returns its logits on the CPU, so a GPU's copies in and out count, as
they do for a caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

MIN_QUERIES = 200
WARMUP_QUERIES = 20
MIN_CALLS = 10  # batches timed for throughput, at least
MAX_CALLS = 200
MIN_SECONDS = 1.0
WARMUP_CALLS = 3

Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Timing:
    batch_size: int
    calls: int
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    images_per_s: float

    def metrics(self) -> dict:
        return {"latency_p50_ms": self.latency_p50_ms, "latency_p90_ms": self.latency_p90_ms,
                "latency_p99_ms": self.latency_p99_ms, "images_per_s": self.images_per_s, "timed_calls": self.calls}


def percentile_ms(seconds: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (the smallest time that ``q`` percent of the calls do not exceed)."""
    return float(np.percentile(np.asarray(seconds) * 1e3, q, method="inverted_cdf"))


def timing(batch_size: int, seconds: list[float]) -> Timing:
    return Timing(batch_size, len(seconds), percentile_ms(seconds, 50), percentile_ms(seconds, 90),
                  percentile_ms(seconds, 99), batch_size * len(seconds) / sum(seconds))


def time_calls(predict: Predictor, batch: torch.Tensor, calls: int | None = None, warmup: int = WARMUP_CALLS,
               min_seconds: float = 0.0, max_calls: int = MAX_CALLS) -> list[float]:
    """Seconds of each timed call of ``predict(batch)``: ``calls`` of them, or (``calls`` None) at least
    ``MIN_CALLS`` and as many more as fit in ``min_seconds``, up to ``max_calls``."""
    for _ in range(warmup):
        predict(batch)
    seconds: list[float] = []
    wanted = calls if calls is not None else MIN_CALLS
    while len(seconds) < wanted or (calls is None and sum(seconds) < min_seconds and len(seconds) < max_calls):
        started = time.perf_counter()
        predict(batch)
        seconds.append(time.perf_counter() - started)
    return seconds


def latency(predict: Predictor, image: torch.Tensor, queries: int = MIN_QUERIES) -> Timing:
    """``queries`` single queries of ``image`` ([1, 3, H, W]) after ``WARMUP_QUERIES``."""
    return timing(1, time_calls(predict, image, calls=max(queries, MIN_QUERIES), warmup=WARMUP_QUERIES))


def throughput(predict: Predictor, batch: torch.Tensor, min_seconds: float = MIN_SECONDS) -> Timing:
    """Back-to-back batches of ``batch`` after ``WARMUP_CALLS``, for at least ``min_seconds``."""
    return timing(len(batch), time_calls(predict, batch, warmup=WARMUP_CALLS, min_seconds=min_seconds))


def measure(predict: Predictor, images: torch.Tensor, batch_size: int, queries: int = MIN_QUERIES,
            min_seconds: float = MIN_SECONDS) -> Timing:
    """Latency at batch 1, throughput at any larger batch (``images`` repeated to fill a batch larger than them)."""
    batch = batch_of(images, batch_size)
    return latency(predict, batch, queries) if batch_size == 1 else throughput(predict, batch, min_seconds)


def batch_of(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first ``batch_size`` of ``images``, repeated where there are fewer."""
    repeats = -(-batch_size // len(images))
    return images.repeat(repeats, 1, 1, 1)[:batch_size].contiguous() if repeats > 1 else images[:batch_size].contiguous()
