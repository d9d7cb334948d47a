"""Atomic file output: what a user has is never left half-written.

Every file npspeech writes (model files, checkpoints, logs, reports, language models,
scorers, feature caches) goes through :func:`write_atomically`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import OutputError


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[bytes]], object]
) -> Path:
    """Write a file through ``write(handle)`` so the target is never seen half-written.

    The bytes go to a temporary file in the target's folder (same filesystem, so the
    rename is atomic), which is flushed and fsynced before :func:`os.replace`; the
    folder is fsynced after the rename where the OS allows it, so the new name survives
    a crash. ``handle`` is a binary file opened for writing; it can seek. ``path`` may
    be a file that ``write`` itself reads (it is replaced only at the end).

    Raises
    ------
    OutputError
        When the folder cannot be created or written to.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        raise OutputError(f"{path}: cannot write here ({error.strerror})") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            # mkstemp makes the file private (0600); give it the mode a plain open()
            # would have: the replaced file's, else the default under the umask.
            os.chmod(temporary, _file_mode(path))
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(path.parent)
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """:func:`write_atomically` for UTF-8 text."""
    return write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def _file_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
