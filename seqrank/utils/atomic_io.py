"""Atomic file writes: readers see either the old file or the whole new one, never a part.

A write goes to a temporary ``.<name>.<random>.tmp`` file in the destination directory, which is
renamed over ``<name>`` when complete. While it is being written the temporary file holds an
exclusive ``flock``; the kernel drops the lock when the writer dies, however it dies (SIGKILL
included). :func:`remove_stale_temp_files` uses this to tell the leftovers of an interrupted write
from a write in progress in another process. A SIGTERM (with the handler of
:mod:`seqrank.utils.sigterm`) waits until a write is complete.
"""

import errno
import fcntl
import json
import math
import os
import re
import stat
import tempfile

from seqrank.utils.sigterm import sigterm_deferred

__all__ = [
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_files",
    "atomic_write_json",
    "current_umask",
    "json_bytes",
    "json_safe",
    "remove_stale_temp_files",
]

# mkstemp's random part: 8 characters of [a-z0-9_].
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


@sigterm_deferred()
def atomic_write(path, write):
    """Create or replace ``path`` with what ``write(f)`` writes to a binary file object.

    The temporary file lives in the destination directory because ``os.replace`` is only atomic
    within one file system; it is synced before the rename and removed if anything fails. A
    SIGTERM handled by :func:`seqrank.utils.sigterm.exit_on_sigterm` ends the process once the
    file is in place.
    """
    path = os.fspath(path)
    fd, tmp = _staged(path, write)
    try:
        # Renamed while still locked, so a cleaner never sees it unlocked before it is done.
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        os.close(fd)


def _staged(path, write):
    """``(fd, name)`` of a synced temporary file beside ``path`` holding what ``write(f)`` wrote.

    The descriptor stays open, and so the file locked, until the caller has renamed it and
    closes ``fd``.
    """
    fd, tmp = _locked_temp_file(path)
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException as exc:
        # Removed before the lock is dropped, so no cleaner races this removal.
        _remove(tmp)
        os.close(fd)
        interruption = _interruption_behind(exc)
        if interruption is None:
            raise
        raise interruption from None
    return fd, tmp


def _interruption_behind(exc):
    """The ``SystemExit`` / ``KeyboardInterrupt`` that ``exc`` was raised while handling, if any.

    An interrupted writer can fail again while unwinding (torch.save's zip writer checks its
    position in ``__exit__``); the caller must see the interruption, not that second error.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return None if not seen else exc
        seen.add(id(exc))
        exc = exc.__context__
    return None


def _remove(tmp):
    if os.path.exists(tmp):
        os.remove(tmp)


def _locked_temp_file(path):
    """``(fd, name)`` of a new temporary file next to ``path``, exclusively locked.

    A cleaner may remove the file between its creation and the lock (it was not locked yet); the
    name then no longer refers to the locked file and another one is made.
    """
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
        )
        try:
            _lock(fd, fcntl.LOCK_EX)
            if _same_file(fd, tmp):
                return fd, tmp
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _lock(fd, operation):
    """``flock``; a file system without locks (e.g. NFS mounted ``nolock``) leaves it unlocked."""
    try:
        fcntl.flock(fd, operation)
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise


def _same_file(fd, name):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(name))
    except FileNotFoundError:
        return False


def atomic_write_bytes(path, data):
    """Write the bytes ``data`` to ``path`` with :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(path, obj):
    """``torch.save(obj)`` to ``path`` with :func:`atomic_write` (no partial file on failure)."""
    import torch  # here: the JSON and byte writers serve processes that never load torch

    atomic_write(path, lambda f: torch.save(obj, f))


def json_safe(obj):
    """``obj`` with every float NaN (in nested dicts, lists and tuples) replaced by ``None``."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def json_bytes(obj, indent=None, compact=False, newline=False):
    """UTF-8 JSON text of ``obj`` with NaN written as ``null`` (strict JSON).

    ``indent``: as ``json.dumps``; ``compact``: no spaces after separators; ``newline``: end
    the text with a newline.
    """
    separators = (",", ":") if compact else None
    text = json.dumps(json_safe(obj), indent=indent, separators=separators)
    return (text + "\n" if newline else text).encode("utf-8")


def atomic_write_json(path, obj, indent=1, compact=False, newline=False):
    """Write ``obj`` as JSON (:func:`json_bytes`) to ``path`` with :func:`atomic_write`,
    creating its directory if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, json_bytes(obj, indent, compact, newline))


@sigterm_deferred()
def atomic_write_files(files):
    """Write several files (``{path: bytes}``) as one step: every file is first written and
    synced to a temporary beside it, and only when all of them are complete are they renamed
    into place. A failure while writing leaves every destination untouched."""
    staged = []
    try:
        for path, data in files.items():
            fd, tmp = _staged(os.fspath(path), lambda f, d=data: f.write(d))
            staged.append((fd, tmp, path))
        for _, tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for _, tmp, _ in staged:
            _remove(tmp)
        raise
    finally:
        for fd, _, _ in staged:
            os.close(fd)


def current_umask():
    """The process's file-mode creation mask (reading it means setting it, so it is restored)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temp_files(directory):
    """Remove the temporary files that interrupted atomic writes left in ``directory``.

    Only files named like :func:`atomic_write`'s temporaries (``.<name>.<random>.tmp``) whose lock
    is free are removed: their writer is gone. A temporary still locked by a live writer (another
    process saving into the same folder) is kept. Sub-folders are not searched.

    Returns:
        (removed, in_use): the lists of file names removed and kept because in use.
    """
    removed, in_use = [], []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return removed, in_use
    for name in names:
        if not _TEMP_NAME.fullmatch(name):
            continue
        outcome = _remove_if_unlocked(os.path.join(directory, name))
        if outcome == "removed":
            removed.append(name)
        elif outcome == "in use":
            in_use.append(name)
    return removed, in_use


def _remove_if_unlocked(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        # Gone already, a symbolic link or a folder: not one of ours.
        return "skipped"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "skipped"
        try:
            _lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "in use"
        if not _same_file(fd, path):
            return "skipped"
        os.remove(path)
        return "removed"
    finally:
        os.close(fd)
