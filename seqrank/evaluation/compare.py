"""One SOR benchmark for every method: results files, rank maps and saliency maps side by side.

Each method is one of

* ``results``: a SeqRank results file (``*_coco_format.pth``), masks in predicted rank order;
* ``rankmap``: a folder of grey rank maps (:mod:`seqrank.evaluation.prediction_maps`); each
  grey value is one predicted object, larger first. Protocol ``seqrank`` and ``irsr`` take those
  masks in that order (``irsr`` with the grey values as rank scores); ``assr`` paints them with
  its own greys (top 5) at 640 x 480, exactly as it paints the masks of a results file. So the
  rank maps rendered from a results file score what it scores when its masks do not overlap (a
  rank map keeps an overlap for the most salient object, ASSR's painting for the least);
* ``saliency``: a folder of continuous saliency maps (SOD methods), scored by ``assr`` only, by
  the mean saliency inside each GT object (ties to the object index, as ASSR scored SOD methods;
  see :func:`seqrank.evaluation.protocols.assr_saliency_ranks`) and the MAE of the map against
  the GT grey map; ``seqrank`` and ``irsr`` do not apply (``None``).

Per image the GT is rasterised once and shared by every method, in every form a protocol needs.
Maps of another size than the GT are resized (rank maps nearest neighbour, saliency maps
bilinear) and counted; images without a map or record count as empty predictions and are
listed; files or records that match no image are ignored and counted.

H x W = size of a GT image, N its objects, M the predicted objects. Per-image values and the
bootstrap: :mod:`seqrank.evaluation.compare_stats`.
"""

import logging
import multiprocessing
import os
from functools import cached_property
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ..data.annotations import rasterize_annotations
from ..utils.colormap import render_rank_map
from .bitmaps import MapSummary, pack_bits, pack_rows, summarize_maps, summary_iou
from .metrics import summary_metrics
from .prediction_maps import (
    MAP_KINDS,
    MAX_MAP_PIXELS,
    MAX_RANK_VALUES,
    CompareInputError,
    detect_kind,
    index_map_folder,
    rank_map_masks,
    read_grey_map,
    resize_map,
)
from .protocols import (
    ASSR_GREY,
    ASSR_SIZE,
    PROTOCOLS,
    assr_mae_from_maps,
    assr_predicted_ranks,
    assr_rank_map,
    assr_saliency_ranks,
    assr_sor_from_ranks,
    irsr_sa_sor_from_iou,
    resize_binary,
    summarize_protocols,
)
from .results_file import MaskLimits, ResultsFileError, decode_masks, load_results
from .sod import SOD_METRICS, SODScorer, sod_aggregate

__all__ = [
    "APPLICABLE",
    "Comparison",
    "CompareInputError",
    "HEADLINE",
    "ImageTruth",
    "MethodResult",
    "MethodSpec",
    "PREDICTION_KINDS",
    "Prediction",
    "assr_pred_map",
    "check_method_specs",
    "compare_methods",
    "default_workers",
    "open_source",
    "parse_method_spec",
    "score_image",
]

logger = logging.getLogger(__name__)

PREDICTION_KINDS = ("results",) + MAP_KINDS
# Protocols that can score each kind of prediction ("sod" = the SOD metrics).
APPLICABLE = {
    "results": PROTOCOLS + ("sod",),
    "rankmap": PROTOCOLS + ("sod",),
    "saliency": ("assr", "sod"),
}
# The metrics of the comparison table, (protocol, metric), and whether lower is better.
HEADLINE = (
    ("seqrank", "sa_sor"),
    ("seqrank", "sor"),
    ("seqrank", "mae"),
    ("irsr", "sa_sor"),
    ("assr", "sor"),
    ("assr", "mae"),
) + tuple(("sod", m) for m in SOD_METRICS)
LOWER_IS_BETTER = {"mae"}


class MethodSpec(NamedTuple):
    """One ``--pred NAME=[KIND:]PATH``; ``kind`` None = detected."""

    name: str
    path: str
    kind: Optional[str]


def parse_method_spec(text: str) -> MethodSpec:
    """``NAME=PATH``, ``NAME=rankmap:PATH``, ``NAME=saliency:PATH`` or ``NAME=results:PATH``."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest:
        raise CompareInputError(
            f"--pred {text!r}: expected NAME=PATH (or NAME=rankmap:PATH, NAME=saliency:PATH)"
        )
    kind = None
    for candidate in PREDICTION_KINDS:
        if rest.startswith(candidate + ":"):
            kind, rest = candidate, rest[len(candidate) + 1 :]
            break
    if not rest:
        raise CompareInputError(f"--pred {text!r}: no path after '{kind}:'")
    return MethodSpec(name.strip(), rest, kind)


def check_method_specs(specs: Sequence[MethodSpec]) -> None:
    """Refuse an empty list and duplicate method names."""
    if not specs:
        raise CompareInputError("--pred: give at least one method as NAME=PATH")
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise CompareInputError(f"--pred: method name '{spec.name}' is given twice")
        seen.add(spec.name)


# --------------------------------------------------------------------------- inputs


class ImageTruth:
    """The GT of one image in every form the protocols need, computed once for all methods.

    ``masks``: N x H x W float32 {0, 1}, most salient first.
    """

    def __init__(self, record):
        self.name = record["image_name"]
        self.height, self.width = int(record["height"]), int(record["width"])
        if self.height <= 0 or self.width <= 0 or self.height * self.width > MAX_MAP_PIXELS:
            raise CompareInputError(
                f"image '{self.name}': the dataset gives an unusable size "
                f"{self.height} x {self.width}"
            )
        _, self.masks = rasterize_annotations(
            record["annotations"], self.height, self.width, self.name
        )
        self.count = len(self.masks)
        self.summary = summarize_maps(self.masks) if self.count else None

    @property
    def shape(self):
        return self.height, self.width

    @cached_property
    def assr_masks(self) -> np.ndarray:
        """N x 480 x 640 boolean masks (protocol ``assr``)."""
        return resize_binary(self.masks, ASSR_SIZE)

    @cached_property
    def assr_words(self) -> np.ndarray:
        return pack_bits(self.assr_masks)

    @cached_property
    def assr_map(self) -> np.ndarray:
        """480 x 640 uint8 GT grey rank map of protocol ``assr``."""
        return assr_rank_map(self.assr_masks)

    @cached_property
    def saliency(self) -> np.ndarray:
        """H x W boolean GT saliency map: the union of the objects."""
        return self.masks.any(axis=0) if self.count else np.zeros(self.shape, dtype=bool)


class Prediction(NamedTuple):
    """A method's prediction for one image.

    ``masks``: M x H x W boolean masks (C order) in predicted rank order (None for a saliency
    map); ``scores``: M rank scores, higher = more salient (None = derived from the order);
    ``grey``: H x W uint8 map as read (None for a results file, whose rank map is rendered when
    needed); ``areas``: the M pixel counts of the masks when known (None = counted when packed).
    The masks of a rank map (``grey`` and ``masks`` given) do not overlap. ``flags``: "resized"
    (the map had another size than the GT), "many_values" (a rank map with at least
    :data:`MAX_RANK_VALUES` grey values).
    """

    masks: Optional[np.ndarray]
    scores: Optional[np.ndarray]
    grey: Optional[np.ndarray]
    areas: Optional[np.ndarray] = None
    flags: Tuple[str, ...] = ()

    def grey_map(self) -> np.ndarray:
        if self.grey is not None:
            return self.grey
        return render_rank_map(self.masks, *self.masks.shape[1:])


class ResultsSource:
    """Predictions of a SeqRank results file, read like every results file: the pickle scanned
    and every RLE checked against ``limits`` before anything is decoded
    (:func:`seqrank.utils.results_file.load_results`)."""

    kind = "results"

    def __init__(
        self, spec: MethodSpec, image_names: Sequence[str], limits: Optional[MaskLimits] = None
    ):
        self.spec = spec
        self.limits = limits or MaskLimits()
        try:
            self.results = load_results(spec.path, self.limits)
        except ResultsFileError as exc:
            raise CompareInputError(str(exc)) from exc
        names = set(image_names)
        self.missing = [n for n in image_names if n not in self.results]
        self.extra = sorted(str(k) for k in self.results if k not in names)
        if len(self.missing) == len(image_names):
            raise CompareInputError(
                f"{spec.path}: no record is named after an image of the dataset"
            )

    def predict(self, name: str, height: int, width: int) -> Prediction:
        record = self.results.get(name)
        if record is None:
            return Prediction(np.zeros((0, height, width), dtype=bool), None, None)
        # Checked before decoding, so that the GT size bounds what decoding allocates.
        for k, rle in enumerate(record["masks"]):
            if not _same_size(rle["size"], height, width):
                raise CompareInputError(
                    f"{self.spec.path}: image '{name}' mask {k} has size {rle['size']} but the "
                    f"GT image is {height} x {width}"
                )
        masks = decode_masks(record, self.limits, f"{self.spec.path}: record '{name}'")
        return Prediction(_c_order_bits(masks, height, width), None, None)


def _same_size(size, height, width):
    try:
        return [int(v) for v in size] == [height, width]
    except (TypeError, ValueError):
        return False


def _c_order_bits(masks, height, width):
    """M x H x W boolean C-order masks of RLE-decoded maps.

    Decoded RLE masks are column-major (Fortran order): every pass over them in row order is a
    strided walk, about 10x slower. ``m.T`` is a row-major view, thresholded in one contiguous
    pass and transposed back by OpenCV's vectorised transpose.
    """
    if not masks:
        return np.zeros((0, height, width), dtype=bool)
    bits = [cv2.transpose(np.not_equal(m.T, 0).view(np.uint8)) for m in masks]
    return np.stack(bits).view(bool)


class MapSource:
    """Predictions of a folder of rank maps or saliency maps."""

    def __init__(self, spec: MethodSpec, image_names: Sequence[str]):
        self.spec = spec
        self.folder = index_map_folder(spec.path, image_names)
        if spec.kind is None:
            self.kind, reason = detect_kind(self.folder)
            logger.info(
                "%s: %s detected as %s maps (%s); force the kind with %s=%s:%s",
                spec.name,
                spec.path,
                "rank" if self.kind == "rankmap" else "saliency",
                reason,
                spec.name,
                "saliency" if self.kind == "rankmap" else "rankmap",
                spec.path,
            )
        else:
            self.kind = spec.kind
        self.missing = [n for n in image_names if n not in self.folder.files]
        self.extra = self.folder.extra

    def predict(self, name: str, height: int, width: int) -> Prediction:
        path = self.folder.files.get(name)
        flags = ()
        if path is None:
            grey = np.zeros((height, width), dtype=np.uint8)
        else:
            grey = read_grey_map(path)
            if grey.shape != (height, width):
                flags = ("resized",)
                grey = resize_map(grey, height, width, self.kind)
        if self.kind == "saliency":
            return Prediction(None, None, grey, None, flags)
        values, masks, areas = rank_map_masks(grey)
        if len(values) >= MAX_RANK_VALUES:
            flags += ("many_values",)
        return Prediction(masks, values.astype(np.float64), grey, areas, flags)


def open_source(spec: MethodSpec, image_names: Sequence[str], limits: Optional[MaskLimits] = None):
    """The prediction source of one method; the kind of a path is checked against ``spec``.
    ``limits`` bound the masks of a results file."""
    if os.path.isfile(spec.path):
        if spec.kind not in (None, "results"):
            raise CompareInputError(
                f"--pred {spec.name}: {spec.path} is a file, but {spec.kind} maps are a folder"
            )
        return ResultsSource(spec, image_names, limits)
    if spec.kind == "results":
        raise CompareInputError(f"--pred {spec.name}: results file not found: {spec.path}")
    return MapSource(spec, image_names)


# --------------------------------------------------------------------------- scoring


def score_image(
    truth: ImageTruth,
    pred: Prediction,
    protocols: Sequence[str],
    threshold: float = 0.5,
    sod: Optional[SODScorer] = None,
) -> Dict[str, object]:
    """Per-image scores of one prediction under ``protocols`` (those that apply to it).

    Returns the structure :func:`summarize_protocols` reads (``"seqrank"``: metrics dict, None
    without GT; ``"irsr"``: SA-SOR or None; ``"assr"``: ``(rho or None, mae)``), plus ``"sod"``
    (the :class:`SODScorer` dict, None without GT) when ``sod`` is given.
    """
    scores: Dict[str, object] = {}
    if truth.count == 0:
        if "seqrank" in protocols:
            scores["seqrank"] = None
        if sod is not None:
            scores["sod"] = None
        return scores
    if pred.masks is not None:
        _score_objects(scores, truth, pred, protocols, threshold)
    elif "assr" in protocols:
        small = cv2.resize(pred.grey, ASSR_SIZE, interpolation=cv2.INTER_LINEAR)
        ranks = assr_saliency_ranks(small, truth.assr_masks)
        scores["assr"] = (assr_sor_from_ranks(ranks), assr_mae_from_maps(small, truth.assr_map))
    if sod is not None:
        scores["sod"] = sod(pred.grey_map(), truth.saliency)
    return scores


def _summary(pred, shape):
    """:func:`summarize_maps` of the boolean masks: they only need packing."""
    words = pack_rows(pred.masks)
    areas = pred.areas
    if areas is None:
        areas = np.bitwise_count(words).sum(axis=(1, 2), dtype=np.int64)
    return MapSummary(words, shape[1], None, areas)


def assr_pred_map(pred):
    """Protocol assr's 480 x 640 grey map of a prediction (top 5 in ASSR's greys)."""
    if pred.grey is None:
        return assr_rank_map(resize_binary(pred.masks[: len(ASSR_GREY)], ASSR_SIZE))
    # The masks of a rank map do not overlap, so resizing the map once (nearest neighbour
    # samples the same pixels for every mask) and recolouring it paints the same map.
    lut = np.zeros(256, dtype=np.uint8)
    top = pred.scores[: len(ASSR_GREY)].astype(np.intp)
    lut[top] = ASSR_GREY[: len(top)]
    return lut[cv2.resize(pred.grey, ASSR_SIZE, interpolation=cv2.INTER_NEAREST)]


def _score_objects(scores, truth, pred, protocols, threshold):
    if "seqrank" in protocols or "irsr" in protocols:
        summary = _summary(pred, truth.shape)
        if "seqrank" in protocols:
            scores["seqrank"] = summary_metrics(summary, truth.summary, threshold)
        if "irsr" in protocols:
            iou = summary_iou(summary, truth.summary, eps=0.0)
            scores["irsr"] = irsr_sa_sor_from_iou(iou, None, pred.scores)
    if "assr" in protocols:
        pred_map = assr_pred_map(pred)
        ranks = assr_predicted_ranks(pred_map, truth.assr_words)
        scores["assr"] = (assr_sor_from_ranks(ranks), assr_mae_from_maps(pred_map, truth.assr_map))


class MethodResult(NamedTuple):
    """One method of a comparison: what was read and how it scored.

    ``summary``: ``{protocol: metrics dict or None (not applicable)}`` for every protocol
    compared; ``per_image``: the :func:`score_image` dicts in dataset order.
    """

    name: str
    kind: str
    path: str
    missing: List[str]
    extra: List[str]
    resized: List[str]
    many_values: List[str]
    summary: Dict[str, Optional[Dict[str, float]]]
    per_image: List[Dict[str, object]]


class Comparison(NamedTuple):
    dataset: str
    images: List[str]
    protocols: List[str]
    methods: Dict[str, MethodResult]


def compare_methods(
    dataset: str,
    records: Sequence[dict],
    sources: Dict[str, object],
    protocols: Sequence[str] = PROTOCOLS,
    threshold: float = 0.5,
    sod_metrics: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> Comparison:
    """Score every source on every image of ``records`` (detectron2 dataset dicts).

    Images are read one at a time, so memory stays flat on full benchmarks. ``workers > 1``
    scores chunks of images in that many forked processes (the sources are inherited, not
    copied); the results are the same, in the same order.
    """
    protocols = [p for p in PROTOCOLS if p in protocols] + (["sod"] if sod_metrics else [])
    job = _Job(records, sources, protocols, threshold, sod_metrics)
    rows = []
    with tqdm(
        total=len(records), desc="comparing", unit="img", leave=False, disable=not progress
    ) as bar:
        for chunk in _run_chunks(job, workers):
            rows += chunk
            bar.update(len(chunk))
    methods = {}
    for name, source in sources.items():
        preds = [row[name] for row in rows]
        flagged = {
            flag: [r["image_name"] for r, (_, f) in zip(records, preds) if flag in f]
            for flag in ("resized", "many_values")
        }
        per_image = [scores for scores, _ in preds]
        methods[name] = MethodResult(
            name,
            source.kind,
            source.spec.path,
            source.missing,
            source.extra,
            flagged["resized"],
            flagged["many_values"],
            _summarize(per_image, job.applicable[name], protocols),
            per_image,
        )
    return Comparison(dataset, [r["image_name"] for r in records], protocols, methods)


class _Job:
    """What every chunk of a comparison needs; inherited by forked workers."""

    def __init__(self, records, sources, protocols, threshold, sod_metrics):
        self.records = records
        self.sources = sources
        self.threshold = threshold
        self.sod_metrics = sod_metrics
        self.applicable = {
            name: [p for p in protocols if p in APPLICABLE[s.kind]] for name, s in sources.items()
        }

    def score(self, start: int, stop: int):
        """Per image of ``records[start:stop]``: ``{method: (scores, flags)}``."""
        scorers = {name: SODScorer() for name in self.sources} if self.sod_metrics else {}
        rows = []
        for record in self.records[start:stop]:
            truth = ImageTruth(record)
            row = {}
            for name, source in self.sources.items():
                pred = source.predict(truth.name, truth.height, truth.width)
                scores = score_image(
                    truth, pred, self.applicable[name], self.threshold, scorers.get(name)
                )
                row[name] = (scores, pred.flags)
            rows.append(row)
        return rows


_CHUNK = 16
_WORKER_JOB = None


def default_workers() -> int:
    """The usable CPU cores, at most 4 (the scoring is memory-bound beyond that)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _run_chunks(job, workers):
    """Chunks of per-image rows, in dataset order."""
    n = len(job.records)
    # Small enough that every worker gets several chunks, so none idles at the end.
    size = max(1, min(_CHUNK, n // (4 * max(1, workers))))
    bounds = [(s, min(s + size, n)) for s in range(0, n, size)]
    if workers <= 1 or len(bounds) <= 1:
        for start, stop in bounds:
            yield job.score(start, stop)
        return
    global _WORKER_JOB
    _WORKER_JOB = job
    threads = cv2.getNumThreads()
    try:
        # OpenCV's thread pool does not survive a fork (a child can inherit one of its locks
        # held); with one thread it is stopped here, in the parent, and the children never use
        # it. The parent gets its threads back once the children are started.
        cv2.setNumThreads(1)
        pool = multiprocessing.get_context("fork").Pool(min(workers, len(bounds)))
        cv2.setNumThreads(threads)
        with pool:
            yield from pool.imap(_score_chunk, bounds)
    finally:
        cv2.setNumThreads(threads)
        _WORKER_JOB = None


def _score_chunk(bounds):
    return _WORKER_JOB.score(*bounds)


def _summarize(per_image, applicable, protocols):
    sor = [p for p in applicable if p in PROTOCOLS]
    found = summarize_protocols(per_image, sor) if sor else {}
    if "sod" in applicable:
        found["sod"] = sod_aggregate([s["sod"] for s in per_image])
    return {p: found.get(p) for p in protocols}
