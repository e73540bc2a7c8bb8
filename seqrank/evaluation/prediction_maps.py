"""Reading the prediction maps other salient-object ranking and detection methods release.

* **Rank maps** (ASSR, IRSR, OCOR, PSR, ... and SeqRank's ``TEST.EVAL_SAVE``): one single-channel
  8-bit PNG per image, ``<image_name>.png`` or ``<image_name>_count_<n>.png``; 0 = background,
  each object one grey value, larger = more salient.
* **Saliency maps** (SOD methods): continuous 8-bit grey PNGs, same names.

H x W is the size of a GT image, K the number of objects of a rank map. Every failure is a
:class:`CompareInputError` whose message is one line naming the file or argument.
"""

import os
import re
from typing import Dict, List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from ..cli import SeqRankUserError

__all__ = [
    "CompareInputError",
    "MAP_KINDS",
    "MAX_RANK_VALUES",
    "MapFolder",
    "detect_kind",
    "index_map_folder",
    "is_rank_map",
    "rank_map_masks",
    "read_grey_map",
    "resize_map",
]

MAP_KINDS = ("rankmap", "saliency")
# A rank map has one grey value per object; more values than this means a continuous map.
MAX_RANK_VALUES = 32
# Share of the grey-level edges that may lie on a ramp (a pixel strictly between its two
# neighbours) in a rank map: thin objects make a few, smooth saliency makes many.
MAX_RAMP_FRACTION = 0.05
RAMP_SPACINGS = (1, 4)
# Bound on a map's pixels, checked on the PNG header before anything is decoded (8K x 8K).
MAX_MAP_PIXELS = 1 << 26
DETECT_SAMPLES = 8

_COUNT_SUFFIX = re.compile(r"^(?P<name>.+)_count_(?P<n>\d+)$")


class CompareInputError(SeqRankUserError, ValueError):
    """Bad input of a method comparison (a map, a folder, a results file, an argument)."""


class MapFolder(NamedTuple):
    """The maps of a folder matched to the images of a dataset.

    ``files``: image name -> path of its map; ``extra``: names of the files matching no image.
    """

    path: str
    files: Dict[str, str]
    extra: List[str]


def _image_name(stem: str, names) -> str:
    """The dataset image a file stem belongs to ('' for none); ``_count_<n>`` is recognised."""
    if stem in names:
        return stem
    match = _COUNT_SUFFIX.match(stem)
    if match and match.group("name") in names:
        return match.group("name")
    return ""


def index_map_folder(folder: str, image_names: Sequence[str]) -> MapFolder:
    """Match the PNG files of ``folder`` (not recursive) to ``image_names``.

    Raises:
        CompareInputError: not a folder, two maps for one image, or no map matches any image.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise CompareInputError(f"{folder}: no such file or folder")
    names = set(image_names)
    files, extra = {}, []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.is_file():
                continue
            stem, ext = os.path.splitext(entry.name)
            name = _image_name(stem, names) if ext.lower() == ".png" else ""
            if not name:
                extra.append(entry.name)
            elif name in files:
                first = os.path.basename(files[name])
                raise CompareInputError(
                    f"{folder}: two maps for image '{name}': {first} and {entry.name}"
                )
            else:
                files[name] = entry.path
    if not files:
        example = f" (e.g. {', '.join(extra[:3])})" if extra else ""
        raise CompareInputError(
            f"{folder}: no file is named after an image of the dataset (expected "
            f"<image_name>.png or <image_name>_count_<n>.png; found {len(extra)} other "
            f"file(s){example})"
        )
    return MapFolder(folder, files, extra)


def read_grey_map(path: str) -> np.ndarray:
    """Read an 8-bit grey PNG as an H x W uint8 array.

    Colour files are accepted when R = G = B (and any alpha is opaque). The size is checked on
    the header first, so an oversized file is refused before it is decoded.

    Raises:
        CompareInputError: unreadable, oversized, not 8-bit, or coloured.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CompareInputError(f"{path}: not a readable image ({exc})") from exc
    if width * height > MAX_MAP_PIXELS:
        raise CompareInputError(
            f"{path}: {width} x {height} pixels is more than the {MAX_MAP_PIXELS} allowed"
        )
    with open(path, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if array is None:
        raise CompareInputError(f"{path}: cannot decode the image (truncated or corrupt?)")
    if array.dtype != np.uint8:
        raise CompareInputError(f"{path}: {array.dtype} pixels; maps must be 8-bit")
    return _single_channel(path, array)


def _single_channel(path, array):
    if array.ndim == 2:
        return array
    channels = array.shape[2]
    if channels in (2, 4) and (array[..., -1] != 255).any():
        raise CompareInputError(f"{path}: the map has transparent pixels; expected a grey map")
    colour = array[..., : 3 if channels >= 3 else 1]
    if channels >= 3 and not (
        np.array_equal(colour[..., 0], colour[..., 1])
        and np.array_equal(colour[..., 0], colour[..., 2])
    ):
        raise CompareInputError(
            f"{path}: a colour image ({channels} channels with R, G, B not all equal); rank and "
            "saliency maps must be single-channel grey"
        )
    return np.ascontiguousarray(colour[..., 0])


def grey_values(grey: np.ndarray) -> np.ndarray:
    """The non-zero grey values present in ``grey``, largest first."""
    counts = np.bincount(grey.reshape(-1), minlength=256)
    return np.flatnonzero(counts[1:])[::-1] + 1


def _ramp_fraction(grey: np.ndarray) -> float:
    """Largest share, over the spacings of :data:`RAMP_SPACINGS`, of the pixel pairs that differ
    (an edge) where the pixel lies strictly between its two neighbours at that spacing, along
    rows and columns. Smooth maps ramp at spacing 1, posterised ones over a few pixels; in a rank
    map only objects thinner than twice the spacing do."""
    g = grey.astype(np.int16)
    worst = 0.0
    for k in RAMP_SPACINGS:
        ramps = edges = 0
        for a, b, c in (
            (g[:, : -2 * k], g[:, k:-k], g[:, 2 * k :]),
            (g[: -2 * k], g[k:-k], g[2 * k :]),
        ):
            lo, hi = np.minimum(a, c), np.maximum(a, c)
            ramps += int(np.count_nonzero((lo < b) & (b < hi)))
            edges += int(np.count_nonzero(a != b))
        worst = max(worst, ramps / edges if edges else 0.0)
    return worst


def is_rank_map(grey: np.ndarray) -> bool:
    """A rank map has at most :data:`MAX_RANK_VALUES` grey values and no gradients."""
    if len(grey_values(grey)) + 1 > MAX_RANK_VALUES:
        return False
    return _ramp_fraction(grey) <= MAX_RAMP_FRACTION


def detect_kind(folder: MapFolder, samples: int = DETECT_SAMPLES) -> Tuple[str, str]:
    """``("rankmap" | "saliency", reason)`` from up to ``samples`` maps spread over the folder."""
    names = sorted(folder.files)
    picks = sorted(
        {names[round(i * (len(names) - 1) / max(1, samples - 1))] for i in range(samples)}
    )
    for name in picks:
        grey = read_grey_map(folder.files[name])
        if not is_rank_map(grey):
            reason = (
                f"{os.path.basename(folder.files[name])} has {len(grey_values(grey)) + 1} grey "
                "values or gradients"
            )
            return "saliency", reason
    return "rankmap", (
        f"{len(picks)} sampled map(s) have at most {MAX_RANK_VALUES} grey values and no gradients"
    )


def rank_map_masks(grey: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Objects of a rank map: ``(values, masks, areas)``, the K grey values largest first, the
    K x H x W boolean masks ``grey == value`` in that order (the predicted rank order) and their
    K pixel counts."""
    counts = np.bincount(grey.reshape(-1), minlength=256)
    values = np.flatnonzero(counts[1:])[::-1] + 1
    masks = grey[None, :, :] == values[:, None, None].astype(np.uint8)
    return values, masks, counts[values].astype(np.int64)


def resize_map(grey: np.ndarray, height: int, width: int, kind: str) -> np.ndarray:
    """``grey`` at ``height`` x ``width``: nearest neighbour for rank maps (no new grey value),
    bilinear for saliency maps."""
    interpolation = cv2.INTER_NEAREST if kind == "rankmap" else cv2.INTER_LINEAR
    return cv2.resize(grey, (int(width), int(height)), interpolation=interpolation)
