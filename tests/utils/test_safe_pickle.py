"""The pickle scan: legitimate files pass untouched, forged sizes and amplification are refused.

Nothing here unpickles a bomb: the scan only reads opcodes (the bombs are run for real, under a
memory limit, in tests/test_hostile_inputs.py).
"""

import _codecs
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch

from seqrank.utils.safe_pickle import (
    PickleLimitError,
    check_pickle_file,
    check_pickle_stream,
    check_torch_file,
    describe_non_torch_file,
    refused_global,
)
from tests.conftest import PARITY


class _Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _scan(obj, protocol=2, budget=10**8, max_object=10**6):
    data = pickle.dumps(obj, protocol=protocol)
    return check_pickle_stream(io.BytesIO(data), "x.pkl", budget, max_object)


@pytest.mark.parametrize(
    "name", ["checkpoint.pth", "results_handmade.pth", "expected/assr_test_coco_format.pth"]
)
def test_reference_files_pass(name):
    check_torch_file(str(PARITY / name))


@pytest.mark.parametrize("zip_format", [True, False])
def test_state_dicts_and_numpy_values_pass(tmp_path, zip_format):
    state = {"w": torch.randn(300, 300), "i": torch.arange(7), "n": np.arange(5.0), "s": "x" * 99}
    path = tmp_path / "state.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    check_torch_file(str(path), max_object=10_000)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_data_passes_in_every_protocol(protocol):
    record = {"file_name": "a.jpg", "rank": [3, 1.5], "poly": np.arange(8.0), "b": bytearray(9)}
    _scan([record, range(10), {1, 2}, b"bytes"], protocol)


@pytest.mark.parametrize(
    "obj,problem",
    [
        (_Call(bytearray, 10**10), "calling builtins.bytearray would allocate 9,537 MB"),
        (_Call(set, _Call(range, 10**9)), "calling builtins.range would allocate"),
        (_Call(np.ndarray, (10**5, 10**5)), "calling numpy.ndarray would allocate"),
        (bytearray(2 * 10**6), "a BYTEARRAY8 of 2,000,000 bytes would allocate"),
    ],
)
def test_oversized_objects_are_refused(obj, problem):
    with pytest.raises(PickleLimitError, match=problem):
        _scan(obj, protocol=5)


def test_repeated_references_are_refused():
    text = "x" * 100_000
    copies = [_Call(_codecs.encode, text, "latin1") for _ in range(2000)]
    _scan(copies[:100])
    with pytest.raises(PickleLimitError, match="calling _codecs.encode takes its objects past"):
        _scan(copies)


def test_lengths_beyond_the_end_of_the_file_are_refused(tmp_path):
    # BINBYTES8 declaring 20 GB, then nothing: unpicklers allocate before reading.
    path = tmp_path / "forged.pkl"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 20 * 10**9) + b"abc.")
    with pytest.raises(PickleLimitError, match="declares 19,073 MB of data but only 4 bytes"):
        check_pickle_file(str(path))


def test_forged_legacy_storage_is_refused(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(3)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes().replace(
        b"cpuq\x06K\x03N", b"cpuq\x06J" + struct.pack("<i", 10**9) + b"N"
    )
    path.write_bytes(data)
    with pytest.raises(PickleLimitError, match=r"a tensor storage \(torch.FloatStorage\)"):
        check_torch_file(str(path))


def test_compressed_zip_entries_are_refused(tmp_path):
    path = tmp_path / "zipped.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/data.pkl", pickle.dumps({}, protocol=2))
        archive.writestr("a/data/0", b"\0" * 100_000_000)
    with pytest.raises(PickleLimitError, match="zip entries unpack to 95 MB from a"):
        check_torch_file(str(path))


def test_garbage_is_not_a_pickle():
    with pytest.raises(PickleLimitError, match="not a valid pickle"):
        check_pickle_stream(io.BytesIO(b"hello world"), "x.pkl", 10**6)


@pytest.mark.parametrize(
    "content,words",
    [
        (b"", "empty file"),
        (b"version https://git-lfs.github.com/spec/v1\n", "Git LFS pointer"),
        (b"  <!DOCTYPE html>", "HTML/XML page"),
        (b"weights: none\n", "a text file"),
        (b"\x00\x01binary", "unknown format"),
    ],
)
def test_describe_non_torch_file(tmp_path, content, words):
    path = tmp_path / "f.pth"
    path.write_bytes(content)
    assert words in describe_non_torch_file(str(path))


def test_refused_global_reads_old_and_new_torch_messages():
    assert refused_global("Unsupported global: GLOBAL fractions.Fraction was not an allowed") == (
        "fractions.Fraction"
    )
    new = "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
    assert refused_global(new) == "posix.system"
    assert refused_global("Unsupported operand 60") is None
