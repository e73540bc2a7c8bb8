import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from seqrank.evaluation.results_file import (
    ResultsFileError,
    decode_masks,
    encode_mask,
    encode_rle,
    load_results,
    save_results,
)
from seqrank.utils.atomic_io import atomic_write_bytes


def _record(name, masks):
    return {
        "image_name": name,
        "masks": [encode_mask(m) for m in masks],
        "bboxes": [[0.0, 0.0, 3.0, 2.0] for _ in masks],
        "scores": [0.9 for _ in masks],
        "saliency": [0.8 for _ in masks],
        "num": len(masks),
    }


def test_round_trip(tmp_path):
    mask = np.zeros((6, 9), dtype=np.float32)
    mask[1:3, 2:7] = 0.9
    results = {"img": _record("img", [mask, 1 - mask]), "empty": _record("empty", [])}
    path = tmp_path / "res.pth"
    save_results(path, results)
    assert os.listdir(tmp_path) == ["res.pth"]  # no temporary file left behind
    loaded = load_results(path)
    assert set(loaded) == {"img", "empty"}
    decoded = decode_masks(loaded["img"])
    assert [m.dtype for m in decoded] == [np.float32, np.float32]
    np.testing.assert_array_equal(decoded[0], (mask > 0.5).astype(np.float32))
    np.testing.assert_array_equal(decoded[1], (1 - mask > 0.5).astype(np.float32))
    assert decode_masks(loaded["empty"]) == []
    assert isinstance(loaded["img"]["masks"][0]["counts"], bytes)


def test_decode_accepts_str_counts():
    rle = encode_mask(np.eye(4))
    rle = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    np.testing.assert_array_equal(decode_masks({"masks": [rle]})[0], np.eye(4, dtype=np.float32))


def test_failed_atomic_write_keeps_old_file(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"old")

    class Boom:
        def __len__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, Boom())
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(ResultsFileError, match="not found.*missing.pth"):
        load_results(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a torch file")
    with pytest.raises(ResultsFileError, match="garbage.pth: not a results file"):
        load_results(garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save([1, 2, 3], wrong)
    with pytest.raises(ResultsFileError, match="wrong.pth: expected a dict"):
        load_results(wrong)
    torch.save({"a": {"masks": [{"size": [2, 2]}]}}, wrong)
    with pytest.raises(ResultsFileError, match="record 'a' mask 0"):
        load_results(wrong)
    # A checkpoint is a dict too, but its values are not records.
    torch.save({"model": {"w": torch.zeros(2)}}, wrong)
    with pytest.raises(ResultsFileError, match="wrong.pth: this is a model checkpoint"):
        load_results(wrong)
    torch.save({"a": [1], "b": {"masks": 3}}, wrong)
    with pytest.raises(ResultsFileError, match="record 'a' has no 'masks'"):
        load_results(wrong)


def test_reference_results_file_loads(parity_dir):
    results = load_results(parity_dir / "results_handmade.pth")
    assert sorted(results) == [f"parity_fpn_00{i}" for i in range(4)]
    masks = decode_masks(results["parity_fpn_000"])
    assert len(masks) == results["parity_fpn_000"]["num"] == 3
    assert masks[0].shape == (150, 230)


def test_encode_mask_foreground_is_strictly_above_one_half():
    mask = np.array([[0.5, 0.51], [1.0, 0.0]])
    decoded = decode_masks({"masks": [encode_mask(mask)]})[0]
    np.testing.assert_array_equal(decoded, [[0, 1], [1, 0]])


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.float32])
def test_encode_rle_of_any_zero_one_dtype_is_pycocotools_encoding(dtype):
    bits = np.random.default_rng(0).random((2, 5, 70)) < 0.4
    expected = [mask_util.encode(np.asfortranarray(b.astype(np.uint8))) for b in bits]
    assert encode_rle(bits.astype(dtype)) == expected


def test_decode_errors_name_the_record():
    bad = {"masks": [{"size": [2, 2], "counts": b"\xff"}]}
    with pytest.raises(ResultsFileError, match="^record mask 0: "):
        decode_masks(bad)
    with pytest.raises(ResultsFileError, match="^image cat.jpg mask 0: "):
        decode_masks(bad, where="image cat.jpg")
