"""Atomic file writes: readers see either the old file or the whole new one, never a part."""

import os
import tempfile

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_files", "current_umask"]


def atomic_write(path, write):
    """Create or replace ``path`` with what ``write(f)`` writes to a binary file object.

    The temporary file lives in the destination directory because ``os.replace`` is only atomic
    within one file system; it is synced before the rename and removed if anything fails.
    """
    path = os.fspath(path)
    tmp = _staged(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _staged(path, write):
    """A synced temporary file beside ``path`` holding what ``write(f)`` wrote."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _remove(tmp):
    if os.path.exists(tmp):
        os.remove(tmp)


def atomic_write_bytes(path, data):
    """Write the bytes ``data`` to ``path`` with :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_files(files):
    """Write several files (``{path: bytes}``) as one step: every file is first written and
    synced to a temporary beside it, and only when all of them are complete are they renamed
    into place. A failure while writing leaves every destination untouched."""
    staged = []
    try:
        for path, data in files.items():
            staged.append((_staged(os.fspath(path), lambda f, d=data: f.write(d)), path))
        while staged:
            tmp, path = staged[0]
            os.replace(tmp, path)
            staged.pop(0)
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        raise


def current_umask():
    """The process's file-mode creation mask (reading it means setting it, so it is restored)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
