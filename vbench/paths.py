"""Paths a command is about to create: checked before anything is written."""

from __future__ import annotations

import os
from pathlib import Path


def writable_folder(path: Path) -> tuple[bool, Path]:
    """Whether ``path``, or the nearest of its ancestors that exists, is a folder this process can write
    into: (answer, that folder)."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK), existing


def creatable(path: Path) -> tuple[bool, Path]:
    """Whether ``path`` can be created beside its siblings: (answer, its nearest existing ancestor)."""
    return writable_folder(path.parent)
