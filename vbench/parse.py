"""Values given on the command line, parsed in one place: lists of items, seeds."""

from __future__ import annotations

from vbench.errors import VbenchError


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
