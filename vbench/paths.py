"""Paths a command is about to create: checked before anything is written."""

from __future__ import annotations

import os
from pathlib import Path


def creatable(path: Path) -> tuple[bool, Path]:
    """Whether ``path`` can be created: (answer, its nearest existing ancestor, which must be a writable folder)."""
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    return ancestor.is_dir() and os.access(ancestor, os.W_OK | os.X_OK), ancestor
