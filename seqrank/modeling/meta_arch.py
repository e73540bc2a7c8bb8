"""The SeqRank meta-architecture: foveal segmentation + sequential (peripheral) ranking.

It only orchestrates: the trunk (backbone, neck, foveal head) in :meth:`SeqRank.encode`, the
training objective in :mod:`.criterion`, the ranking loop in :meth:`SeqRank.rank` and the per-image
results in :mod:`.postprocessing`.

Letters: B = batch, Q = queries, C = embedding dim, S = input size (square), h x w = mask-logit
size (res2), K = GT objects of an image, H x W = original image size.
"""

import contextlib
import logging
from typing import NamedTuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from torch import nn

from ..utils.device import to_device
from .criterion import SeqRankCriterion
from .postprocessing import image_result
from .precision import check_precision, resolve_precision
from .registry import build_gaze_shift, build_instance_seg, build_neck, build_position_encoding

__all__ = ["Encoded", "SeqRank", "STOP_THRESHOLD"]

logger = logging.getLogger(__name__)

# The original hard-codes both stop thresholds; TEST.THRESHOLD is only used by the metrics.
STOP_THRESHOLD = 0.001


class Encoded(NamedTuple):
    """The shared trunk's outputs for a batch (:meth:`SeqRank.encode`)."""

    q: torch.Tensor  # B x Q x C queries; qpe: their positional embeddings
    qpe: torch.Tensor
    z: torch.Tensor  # B x hw x C image tokens of the gaze level; zpe: their encodings
    zpe: torch.Tensor
    out: dict  # {"masks": B x Q x h x w, "scores": B x Q x 1, "bboxes": B x Q x 4} logits
    aux: list  # the foveal head's intermediate predictions (dicts as ``out``)


def _tokens(x):
    """``B x C x h x w`` -> ``B x hw x C`` (row-major)."""
    return x.flatten(2).transpose(1, 2)


@META_ARCH_REGISTRY.register()
class SeqRank(nn.Module):
    """Detects salient objects with the foveal head and ranks them one at a time.

    Training returns the loss dict of the criterion (docs/ARCHITECTURE.md); inference returns, per
    image, a dict ``{image_name, masks: [H x W bool], bboxes: [[x1, y1, x2, y2]], scores,
    saliency, num}`` in predicted rank order.

    Speed switches, all from ``MODEL.SEQRANK.FAST_INFERENCE`` (default on): ``fast_inference``
    runs inference under ``torch.inference_mode``; ``cache_tokens`` (default: ``fast_inference``)
    computes the ranking blocks' image-token projections once per image; fused attention (SDPA,
    eval mode only) is a constructor argument of the attention modules, passed down when they are
    built. Together they give the same rankings as the original's loop (a test oracle in
    tests/reference/ranking.py) up to float rounding. :meth:`set_fast_inference` changes them on a
    built model, for ablations.

    ``precision`` (``TEST.PRECISION``: ``fp32``, ``bf16``, ``fp16``) is the inference precision:
    anything but ``fp32`` runs inference under ``torch.autocast`` on the model's device type, with
    the decisions (objectness and saliency logits, sigmoids, stop tests, mask thresholding) in
    float32; a device that cannot run it falls back to fp32 with one warning
    (:mod:`.precision`). Training is not affected (``SOLVER.AMP`` decides there).
    :meth:`set_precision` changes it on a built model.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone,
        neck,
        instance_seg,
        gaze_shift,
        pe_layer,
        criterion,
        pixel_mean,
        pixel_std,
        gaze_key="res5",
        exclude_ranked=False,
        fast_inference=True,
        cache_tokens=None,
        precision="fp32",
    ):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.instance_seg = instance_seg
        self.gaze_shift = gaze_shift
        self.pe_layer = pe_layer
        self.criterion = criterion
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), False)
        self.gaze_key = gaze_key
        self.exclude_ranked = exclude_ranked
        self.fast_inference = bool(fast_inference)
        self.cache_tokens = self.fast_inference if cache_tokens is None else bool(cache_tokens)
        self.set_precision(precision)

    @classmethod
    def from_config(cls, cfg):
        return {
            "backbone": build_backbone(cfg),
            "neck": build_neck(cfg),
            "instance_seg": build_instance_seg(cfg),
            "gaze_shift": build_gaze_shift(cfg),
            "pe_layer": build_position_encoding(cfg),
            "criterion": SeqRankCriterion(cfg),
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "gaze_key": cfg.MODEL.GAZE_SHIFT_HEAD.KEY,
            "exclude_ranked": cfg.MODEL.SEQRANK.EXCLUDE_RANKED,
            "fast_inference": cfg.MODEL.SEQRANK.FAST_INFERENCE,
            "precision": cfg.TEST.PRECISION,
        }

    def set_precision(self, precision):
        """Set the inference precision (``fp32``, ``bf16`` or ``fp16``); returns ``self``.

        Raises:
            ConfigError: another value.
        """
        self.precision = check_precision(precision)
        self._resolved_precision = None
        return self

    def inference_dtype(self):
        """The autocast dtype inference runs under on the model's device (None: fp32); the first
        call for a precision and device logs the choice, or the fallback warning."""
        key = (self.precision, str(self.device))
        if self._resolved_precision is None or self._resolved_precision[0] != key:
            dtype, note = resolve_precision(self.precision, self.device)
            if note:
                logger.warning(note)
            elif dtype is not None:
                logger.info("Inference in %s (torch.autocast on %s)", self.precision, key[1])
            self._resolved_precision = (key, dtype)
        return self._resolved_precision[1]

    def _inference_context(self):
        """fp32: ``torch.inference_mode`` with ``fast_inference`` (else nothing). Reduced
        precision: autocast under ``no_grad`` instead, even inside an inference-mode block:
        autocast keeps one cast copy of each weight for the whole forward only outside inference
        mode (inside, every call casts its weights again, 100 ranking steps included)."""
        dtype = self.inference_dtype()
        stack = contextlib.ExitStack()
        if dtype is not None:
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.no_grad())
            stack.enter_context(torch.autocast(self.device.type, dtype=dtype))
        elif self.fast_inference:
            stack.enter_context(torch.inference_mode())
        return stack

    def set_fast_inference(self, enabled=True, fused_attention=None, cache_tokens=None):
        """Switch the inference speed-ups of a built model on or off (ablations); returns ``self``.

        ``fused_attention`` (SDPA in eval mode, every attention module) and ``cache_tokens``
        default to ``enabled``; set them apart e.g. to compare the ranking loops on bit-identical
        features.
        """
        self.fast_inference = bool(enabled)
        fused = self.fast_inference if fused_attention is None else bool(fused_attention)
        self.cache_tokens = self.fast_inference if cache_tokens is None else bool(cache_tokens)
        for module in self._attention_modules():
            module.fused = fused
        return self

    @property
    def fused_attention(self):
        """Whether the attention modules take the fused path in eval mode."""
        return any(module.fused for module in self._attention_modules())

    def _attention_modules(self):
        # Every attention with a fused path exposes ``use_sdpa`` (``fused`` and eval mode).
        return [
            m for m in self.modules() if isinstance(getattr(type(m), "use_sdpa", None), property)
        ]

    @property
    def device(self):
        return self.pixel_mean.device

    def encode(self, batched_inputs):
        """Shared trunk: normalised images -> neck features, PEs and the foveal head outputs."""
        images = torch.stack(to_device([x["image"] for x in batched_inputs], self.device))
        images = (images - self.pixel_mean) / self.pixel_std
        feats = self.neck(self.backbone(images))
        feats_pe = {k: self.pe_layer(v) for k, v in feats.items()}
        q, qpe, out, aux = self.instance_seg(feats, feats_pe)
        z = _tokens(feats[self.gaze_key])
        zpe = _tokens(feats_pe[self.gaze_key])
        return Encoded(q, qpe, z, zpe, out, aux)

    def forward(self, batched_inputs):
        if self.training:
            gt_masks = to_device([x["masks"] for x in batched_inputs], self.device)
            gt_masks = [m.float() for m in gt_masks]
            return self.criterion(self.encode(batched_inputs), gt_masks, self.gaze_shift)
        with self._inference_context():
            return self.rank(batched_inputs, *self.encode(batched_inputs)[:-1])

    def step_logits(self, q, qpe, z, zpe, q_vis, token_cache=None):
        """B x Q saliency logits of one ranking step (ranked queries masked if asked to)."""
        extra = {} if token_cache is None else {"token_cache": token_cache}
        logits = self.gaze_shift(q, z, qpe, zpe, q_vis, **extra)[..., 0].float()
        if self.exclude_ranked:
            logits = logits.masked_fill(q_vis[..., 0] > 0.5, float("-inf"))
        return logits

    def rank(self, batched_inputs, q, qpe, z, zpe, out):
        """Sequential inference (docs/ARCHITECTURE.md): up to Q ranking steps; each image stops
        for good at its first pick whose objectness or saliency falls below ``STOP_THRESHOLD``.

        The original's decisions, with two savings: a stopped image leaves the batch (its rows of
        every per-image tensor are dropped) and each step reads the device once (picks, scores and
        stop flags in one copy); each image's masks are upsampled once, at the end.
        """
        # A context rather than a decorator: mutation testing (scripts/mutation.py) skips
        # decorated functions, and this is the loop it must mutate.
        with torch.no_grad():
            bsz, num_q = out["scores"].shape[:2]
            obj_probs = out["scores"].float().sigmoid()[..., 0]
            q_vis = torch.zeros_like(out["scores"], dtype=torch.float32)
            images = list(range(bsz))
            picks = [[] for _ in range(bsz)]
            cache = None
            if self.cache_tokens and hasattr(self.gaze_shift, "token_cache"):
                cache = self.gaze_shift.token_cache(z, zpe)
            for step in range(num_q):
                logits = self.step_logits(q, qpe, z, zpe, q_vis, cache)
                pick = logits.argmax(dim=1)
                rows = torch.arange(len(images), device=self.device)
                q_vis[rows, pick, 0] = float(step + 1)
                sal = logits[rows, pick].sigmoid()
                obj = obj_probs[rows, pick]
                keep = (obj >= STOP_THRESHOLD) & (sal >= STOP_THRESHOLD)
                # The step's only host sync; float64 holds the indices and float32 scores exactly.
                host = torch.stack([pick.double(), obj.double(), sal.double(), keep.double()]).cpu()
                kept = []
                for row, (p, o, s, k) in enumerate(zip(*host.tolist())):
                    if k:
                        picks[images[row]].append((int(p), o, s))
                        kept.append(row)
                if len(kept) < len(images):
                    if not kept:
                        break
                    # The kept rows in order, found on the device (indexing with a host list syncs).
                    order = torch.sort(keep.to(torch.uint8), descending=True, stable=True).indices
                    order = order[: len(kept)]
                    images = [images[row] for row in kept]
                    q, qpe, z, zpe, q_vis, obj_probs = (
                        t[order] for t in (q, qpe, z, zpe, q_vis, obj_probs)
                    )
                    cache = None if cache is None else [t[order] for t in cache]
            return [
                image_result(x, b, out["masks"][b], out["bboxes"][b], picks[b])
                for b, x in enumerate(batched_inputs)
            ]
