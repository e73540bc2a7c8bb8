"""Atomic writes: whole file or old file, the usual file mode, no temporary left behind (also
after SIGTERM, which waits for the write, Ctrl-C or, via the start-up clean-up, SIGKILL)."""

import os
import signal
import stat

import pytest
import torch

from seqrank.utils.atomic_io import (
    atomic_torch_save,
    atomic_write,
    atomic_write_files,
    atomic_write_json,
    current_umask,
    json_bytes,
    remove_stale_temp_files,
)


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


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    stale = tmp_path / ".model_0000011.pth.k2j_x9az.tmp"
    stale.write_bytes(b"partial")
    others = [".hidden.tmp", "notes.tmp", ".model.pth.tmp", "model_0000011.pth"]
    for name in others:
        (tmp_path / name).write_bytes(b"keep")
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()
    seen = {}

    def write_while_cleaning(f):
        f.write(b"new")
        seen["result"] = remove_stale_temp_files(tmp_path)

    atomic_write(tmp_path / "out.bin", write_while_cleaning)
    removed, in_use = seen["result"]
    assert removed == [stale.name]
    assert len(in_use) == 1 and in_use[0].startswith(".out.bin.")
    assert (tmp_path / "out.bin").read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == sorted(others + [".dir.abcdefgh.tmp", "out.bin"])


def test_sigterm_during_a_write_ends_the_process_once_the_file_is_complete(
    tmp_path, sigterm_handler
):
    def killed_midway(f):
        f.write(b"first half, ")
        os.kill(os.getpid(), signal.SIGTERM)
        f.write(b"second half")

    with pytest.raises(SystemExit) as info:
        atomic_write(tmp_path / "model.pth", killed_midway)
    assert info.value.code == 143
    assert os.listdir(tmp_path) == ["model.pth"]
    assert (tmp_path / "model.pth").read_bytes() == b"first half, second half"


class _Interrupted:
    """A file whose third write is interrupted (by SIGTERM, or by Ctrl-C: ``KeyboardInterrupt``)."""

    def __init__(self, f, interrupt):
        self.f, self.interrupt, self.writes = f, interrupt, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 3:
            self.interrupt()
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def _sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


def _ctrl_c():
    raise KeyboardInterrupt


_STATE = {"weight": torch.zeros(100, 10), "bias": torch.ones(50)}


def test_sigterm_inside_torch_save_waits_for_a_complete_checkpoint(tmp_path, sigterm_handler):
    # Raised inside torch.save, the SystemExit left the zip writer half-done: it failed in its
    # __exit__ ("unexpected pos", exit code 1) or aborted the process (-6) once destroyed.
    path = tmp_path / "model.pth"
    with pytest.raises(SystemExit) as info:
        atomic_write(path, lambda f: torch.save(_STATE, _Interrupted(f, _sigterm)))
    assert info.value.code == 143
    assert os.listdir(tmp_path) == ["model.pth"]
    loaded = torch.load(path, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in _STATE.items())


def test_ctrl_c_inside_torch_save_is_raised_as_itself(tmp_path):
    # The zip writer's own error in __exit__ ("unexpected pos") must not replace the interrupt.
    with pytest.raises(KeyboardInterrupt) as info:
        atomic_write(tmp_path / "m.pth", lambda f: torch.save(_STATE, _Interrupted(f, _ctrl_c)))
    assert info.value.__suppress_context__
    assert os.listdir(tmp_path) == []


def test_an_error_without_interruption_is_raised_unchanged(tmp_path):
    def fails_while_handling(f):
        try:
            raise ValueError("first")
        except ValueError:
            raise OSError("second") from None

    with pytest.raises(OSError, match="second"):
        atomic_write(tmp_path / "out.bin", fails_while_handling)
    assert os.listdir(tmp_path) == []


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


def test_several_files_stay_locked_until_renamed(tmp_path, monkeypatch):
    """A start-up clean-up in another process never removes a staged file of a multi-file write."""
    seen = []
    real_replace = os.replace

    def replace_while_cleaning(src, dst):
        seen.append(remove_stale_temp_files(tmp_path))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_while_cleaning)
    atomic_write_files({tmp_path / "a.txt": b"a", tmp_path / "b.txt": b"b"})
    assert [(removed, len(in_use)) for removed, in_use in seen] == [([], 2), ([], 1)]
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]


def test_json_writer_formats_and_writes_nan_as_null(tmp_path):
    obj = {"a": [1.5, float("nan")], "b": {"c": float("nan"), "d": "x"}}
    assert json_bytes(obj) == b'{"a": [1.5, null], "b": {"c": null, "d": "x"}}'
    assert json_bytes([1, 2], compact=True, newline=True) == b"[1,2]\n"
    assert json_bytes({"k": 1}, indent=1) == b'{\n "k": 1\n}'
    path = tmp_path / "new" / "out.json"
    atomic_write_json(path, obj)
    assert path.read_bytes() == json_bytes(obj, indent=1)
    assert os.listdir(path.parent) == ["out.json"]


def test_atomic_torch_save_round_trip_and_no_leftover_on_failure(tmp_path):
    path = tmp_path / "x.pth"
    atomic_torch_save(path, {"w": torch.arange(3)})
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    with pytest.raises(Exception):
        atomic_torch_save(path, {"bad": lambda: None})  # not picklable
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))
    assert os.listdir(tmp_path) == ["x.pth"]
