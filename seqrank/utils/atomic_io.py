"""Atomic file writes: readers see either the old file or the whole new one, never a part."""

import os
import tempfile

__all__ = ["atomic_write", "atomic_write_bytes", "current_umask"]


def atomic_write(path, write):
    """Create or replace ``path`` with what ``write(f)`` writes to a binary file object.

    The temporary file lives in the destination directory because ``os.replace`` is only atomic
    within one file system; it is synced before the rename and removed if anything fails.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    """Write the bytes ``data`` to ``path`` with :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(data))


def current_umask():
    """The process's file-mode creation mask (reading it means setting it, so it is restored)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
