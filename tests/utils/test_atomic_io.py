"""Atomic writes: whole file or old file, the usual file mode, no temporary left behind."""

import os
import stat

import pytest

from seqrank.utils.atomic_io import atomic_write, current_umask


def test_written_file_gets_the_mode_of_a_plain_open(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write(path, lambda f: f.write(b"data"))
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~current_umask()


def test_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]
