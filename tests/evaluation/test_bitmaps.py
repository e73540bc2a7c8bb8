"""The contracts of the bit-packed mask summaries (seqrank/evaluation/bitmaps.py) that the metric
tests do not reach: exact int64 counts on every path, empty and mixed inputs, every bit of a word.

Letters: K maps of H x W pixels, R = ceil(W / 64) words per row.
"""

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

from seqrank.evaluation.bitmaps import (
    intersections,
    iou_from_counts,
    pack_bits,
    pack_rows,
    popcount,
    summarize_maps,
)

ALL_ONES = np.uint64(2**64 - 1)


def test_popcount_counts_in_int64():
    words = np.array([[0, 1, 3, 2**63], [ALL_ONES, 0, 0, 0]], dtype=np.uint64)
    counts = popcount(words)
    assert counts.dtype == np.int64 and counts.shape == (2,)
    assert counts.tolist() == [0 + 1 + 2 + 1, 64]


def test_popcount_of_2_to_the_32_bits_does_not_wrap():
    # 2**26 all-ones words (a zero-strided view of one word): 2**32 bits, one more than uint32
    # holds, so the count must take the int64 path, along the last axis only.
    word = np.array([ALL_ONES], dtype=np.uint64)
    words = as_strided(word, shape=(1, 1, 2**26), strides=(0, 0, 0), writeable=False)
    counts = popcount(words)
    assert counts.dtype == np.int64 and counts.shape == (1, 1)
    assert counts[0, 0] == 2**32


def union_words_of(words):
    return np.bitwise_or.reduce(words, axis=0)


@pytest.mark.parametrize("support", [False, True])
def test_intersections_count_every_bit_of_a_word(support):
    # Map b has pixel b of word 0 on (b = 0..63), so every word value 2**k occurs, and the 8th
    # pixel (word value 1) of words 1 and 2; words 3-15 are empty, so with the support only
    # words 0-2 are gathered and counted.
    bits = np.zeros((64, 16 * 64), dtype=bool)
    bits[np.arange(64), np.arange(64)] = True
    bits[:, 64 + 7] = bits[:, 128 + 7] = True
    words = pack_bits(bits)
    common = union_words_of(words) if support else None
    inter = intersections(words, words, support=common)
    expected = bits.astype(np.int64) @ bits.T.astype(np.int64)
    assert inter.dtype == np.int64
    np.testing.assert_array_equal(inter, expected)


def test_intersections_with_a_support_of_single_low_bits():
    # Every word of the support is 1 (the 8th pixel of each 64): no word may be dropped.
    bits = np.zeros((2, 16 * 64), dtype=bool)
    bits[:, 7::64] = True
    words = pack_bits(bits)
    assert (union_words_of(words) == 1).all()
    inter = intersections(words, words, support=union_words_of(words) & union_words_of(words))
    np.testing.assert_array_equal(inter, np.full((2, 2), 16))


def test_iou_without_epsilon_of_empty_and_single_pixel_unions():
    inter = np.array([[0, 0], [0, 1]])
    gt_area = np.array([0, 1])
    pred_area = np.array([0, 1])
    np.testing.assert_array_equal(iou_from_counts(inter, gt_area, pred_area, 0.0), [[0, 0], [0, 1]])
    # Many empty unions: each must be 0, not whatever the output memory held.
    for n in (3, 20, 100):
        zero = np.zeros((n, n), dtype=np.int64)
        assert not iou_from_counts(zero, np.zeros(n, int), np.zeros(n, int), 0.0).any()


def test_empty_array_takes_its_size_from_the_array():
    summary = summarize_maps(np.zeros((0, 5, 70), dtype=np.float32))
    assert summary.shape == (5, 70) and summary.width == 70
    assert summary.words.shape == (0, 5, 2) and summary.words.dtype == np.uint64
    assert summary.union is None
    assert summary.areas.shape == (0,) and summary.areas.dtype == np.int64


def test_empty_sequence_needs_a_size():
    with pytest.raises(ValueError, match="^cannot infer the map size of an empty sequence$"):
        summarize_maps([])
    assert summarize_maps([], shape=(3, 4)).shape == (3, 4)


def test_graded_maps_keep_their_width_and_union():
    maps = np.zeros((2, 3, 70), dtype=np.float32)
    maps[0, 1, 5:9] = 0.7
    maps[1, 2, 60:69] = 1.0
    summary = summarize_maps(maps)
    assert summary.shape == (3, 70) and summary.width == 70
    np.testing.assert_array_equal(summary.union, maps.max(axis=0))
    assert summary.areas.tolist() == [4, 9]


def test_maps_of_several_dtypes_are_unioned_in_their_common_dtype():
    first = np.zeros((2, 3), dtype=np.uint8)
    first[0, 0] = 1
    second = np.zeros((2, 3), dtype=np.float32)
    second[1, 2] = 0.75
    summary = summarize_maps([first, second])
    assert summary.union.dtype == np.float32
    np.testing.assert_array_equal(summary.union, [[1, 0, 0], [0, 0, 0.75]])
    assert summary.areas.tolist() == [1, 1]


@pytest.mark.parametrize("dtype", [object, np.complex64])
def test_maps_whose_values_are_not_counted_by_bit_pattern(dtype):
    # nonzero_count() has no answer for these dtypes: the maps take the general path.
    maps = [np.array([[1, 0, 1], [0, 0, 1]], dtype=dtype)]
    summary = summarize_maps(maps)
    assert summary.areas.tolist() == [3]
    assert summary.union is not None
    np.testing.assert_array_equal(summary.words, pack_rows(np.array(maps) == 1))
