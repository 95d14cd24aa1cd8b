"""Paths a command reads or writes: checked before anything is written, replaced atomically when written."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vbench.errors import VbenchError

PACKAGE_FOLDER = Path(__file__).resolve().parent


def bundled_folder(checkout_name: str, installed_name: str) -> Path:
    """A folder of files vbench ships, found by vbench's own location, never through ``sys.path``: inside an
    installed wheel it is ``vbench/<installed_name>``; in a source checkout (an editable install) it is the
    repository's top-level ``<checkout_name>``. A folder of that name in the working directory, or another
    package of that name, is never taken for it."""
    installed = PACKAGE_FOLDER / installed_name
    if installed.is_dir():
        return installed
    checkout = PACKAGE_FOLDER.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / checkout_name).is_dir():
        return checkout / checkout_name
    raise VbenchError(f"vbench's own {checkout_name}/ folder is missing beside {PACKAGE_FOLDER}; reinstall vbench")


def default_data_root() -> Path:
    """``$VBENCH_DATA``, else ``~/.cache/vbench/data``."""
    return Path(os.environ.get("VBENCH_DATA") or "~/.cache/vbench/data").expanduser()


def cache_root() -> Path:
    """``$VBENCH_CACHE``, else ``$XDG_CACHE_HOME/vbench`` (``~/.cache/vbench``)."""
    base = os.environ.get("VBENCH_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "vbench")
    return Path(base).expanduser()


def nearest_existing(path: Path) -> Path:
    """``path`` itself, or the nearest of its ancestors that exists."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``, tried for real (and removed): permission bits say nothing to
    root, and nothing about /proc or a read-only mount."""
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".vbench-probe-")
    except OSError:
        return False
    os.close(handle)
    os.unlink(probe)
    return True


def writable_folder(path: Path) -> tuple[bool, Path]:
    """Whether ``path``, or the nearest of its ancestors that exists, is a folder this process can create files
    in: (answer, that folder)."""
    existing = nearest_existing(path)
    return existing.is_dir() and _can_create_in(existing), existing


def creatable(path: Path) -> tuple[bool, Path]:
    """Whether ``path`` can be created beside its siblings: (answer, its nearest existing ancestor)."""
    return writable_folder(path.parent)


def check_output(path: str | Path, option: str, folder: bool = False) -> Path:
    """An output a command will write (a file, or a ``folder`` it fills), checked before any work starts, with
    nothing written: one line naming ``option`` when it is of the wrong kind (a folder for a file, a file for a
    folder, a file on its way) or cannot be created or written."""
    if not str(path).strip():
        raise VbenchError(f"{option} is empty; give a {'folder' if folder else 'file path'}")
    target = Path(path).expanduser()
    if folder and target.exists() and not target.is_dir():
        raise VbenchError(f"{option} {str(path)!r} is a file; give a folder")
    if not folder and target.is_dir():
        raise VbenchError(f"{option} {str(path)!r} is a folder; give a file path")
    existing = nearest_existing(target if folder else target.parent)
    if not existing.is_dir():
        raise VbenchError(f"{option} {str(path)!r} cannot be written: {str(existing)!r} (a file) is not a writable "
                          f"folder; give a writable {option}")
    if not _can_create_in(existing):
        raise VbenchError(f"{option} {str(path)!r} cannot be written: {str(existing)!r} is not a writable folder; "
                          f"give a writable {option}")
    if not folder and target.exists() and not os.access(target, os.W_OK):
        raise VbenchError(f"{option} {str(path)!r} cannot be written; give a writable {option}")
    return target


def disk_full_message(folder: Path, needed: int | None = None) -> str:
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    size = f"{needed / 2**20:.1f} MiB are needed and " if needed else ""
    return (f"the disk holding {folder} is full: {size}{free / 2**20:.1f} MiB are free; free some space or point "
            "$VBENCH_ARTIFACTS (or the output option) at another disk")


def _is_disk_full(exc: BaseException) -> bool:
    """ENOSPC, also where a library reports it as text (safetensors' SafetensorError)."""
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextmanager
def atomic_path(path: Path | str, *, sync: bool = False, needed: int | None = None) -> Iterator[Path]:
    """A temporary file beside ``path`` for the caller to write; when the block ends without error it replaces
    ``path`` in one rename (fsynced with its folder when ``sync``), so a reader sees the old file or the whole
    new one. On any error the temporary file is removed; a full disk is one line naming the folder. The file
    gets the umask's mode, as ``open`` would give it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # after the write: a library may have made the file anew
        if sync:
            with open(temporary, "rb+") as stream:
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, Exception) and _is_disk_full(exc):
            raise VbenchError(disk_full_message(path.parent, needed)) from None
        raise
    if sync:
        sync_folder(path.parent)


def atomic_write(path: Path | str, data: bytes | str, *, sync: bool = False) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically (see ``atomic_path``)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, sync=sync, needed=len(payload)) as temporary:
        temporary.write_bytes(payload)
    return Path(path)
