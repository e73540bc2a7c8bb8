"""Atomic writes: whole file or old file, the usual file mode, no temporary left behind."""

import os
import stat

import pytest

from seqrank.utils.atomic_io import atomic_write, atomic_write_files, current_umask


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


def test_several_files_are_written_all_or_none(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"old a")
    atomic_write_files({tmp_path / "a.txt": b"new a", tmp_path / "b.txt": b"new b"})
    assert (tmp_path / "a.txt").read_bytes() == b"new a"
    assert (tmp_path / "b.txt").read_bytes() == b"new b"

    # The second file cannot be written: the first one is not replaced either.
    with pytest.raises(TypeError):
        atomic_write_files({tmp_path / "a.txt": b"newer a", tmp_path / "c.txt": object()})
    assert (tmp_path / "a.txt").read_bytes() == b"new a"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]
