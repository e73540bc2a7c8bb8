"""Dataset mapper: SOR record -> model input dict.

Shapes: N = number of salient objects (may be 0), H x W = original image size (from the record),
S = square input size (INPUT.FT_SIZE_TRAIN or INPUT.FT_SIZE_TEST).
"""

import copy
import logging

import cv2
import numpy as np
import torch
from detectron2.config import configurable

from ..evaluation.results_file import MAX_MASK_PIXELS, MAX_RECORD_PIXELS
from .annotations import check_record_size, rasterize_annotations
from .datasets import DatasetError
from .image_io import read_image_size, read_rgb

__all__ = ["SORDatasetMapper"]

logger = logging.getLogger(__name__)


class SORDatasetMapper:
    """Turn a SOR dataset record into the dict consumed by the SeqRank model.

    Training: horizontal flip with probability ``flip_prob`` (drawn from the global NumPy RNG,
    which detectron2 seeds per data-loader worker), then a square resize to S x S of the image
    (bilinear) and of the masks (nearest, so they stay binary).
    Test: the image is resized to S x S; GT masks stay at the original H x W and nothing is flipped.

    Output dict: ``file_name``, ``image_name``, ``height``, ``width`` (from the record),
    ``image`` (float32 3 x S x S, RGB, 0..255), ``masks`` (float32 N x S x S in training,
    N x H x W in test) and ``ranks`` (list of N category ids, descending).
    """

    @configurable
    def __init__(
        self,
        is_train=True,
        *,
        image_size,
        flip_prob=0.5,
        skip_bad_images=False,
        max_pixels=MAX_MASK_PIXELS,
        max_record_pixels=MAX_RECORD_PIXELS,
    ):
        """
        Args:
            is_train: training (augment, resize masks) or test mapping.
            image_size: S, the side of the square network input.
            flip_prob: probability of a horizontal flip in training (0 disables it).
            skip_bad_images: in training, a missing or unreadable image is logged and skipped
                (detectron2 then draws another sample) instead of stopping the run.
            max_pixels, max_record_pixels: size limits of :func:`check_record_size`.
        """
        self.is_train = is_train
        self.image_size = int(image_size)
        self.flip_prob = float(flip_prob)
        self.skip_bad_images = bool(skip_bad_images) and is_train
        self.max_pixels = int(max_pixels)
        self.max_record_pixels = int(max_record_pixels)
        self.num_skipped = 0

    @classmethod
    def from_config(cls, cfg, is_train=True):
        size = cfg.INPUT.FT_SIZE_TRAIN if is_train else cfg.INPUT.FT_SIZE_TEST
        return {
            "is_train": is_train,
            "image_size": size,
            "skip_bad_images": cfg.DATALOADER.SKIP_BAD_IMAGES,
            "max_pixels": cfg.LIMITS.MAX_MASK_PIXELS,
            "max_record_pixels": cfg.LIMITS.MAX_RECORD_PIXELS,
        }

    def __call__(self, dataset_dict):
        try:
            return self._map(dataset_dict)
        except (FileNotFoundError, ValueError) as exc:
            if not self.skip_bad_images:
                raise
            self.num_skipped += 1
            logger.warning("Skipping a bad training image (%d so far): %s", self.num_skipped, exc)
            return None

    def _map(self, dataset_dict):
        record = copy.deepcopy(dataset_dict)
        height, width = record["height"], record["width"]
        self._check_size(record)
        image = read_rgb(record["file_name"])  # stored pixel order, as the original
        ranks, masks = rasterize_annotations(
            record["annotations"], height, width, image_name=record["image_name"]
        )
        if self.is_train and np.random.rand() < self.flip_prob:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
        image = self._resize(image, cv2.INTER_LINEAR)
        if self.is_train:
            masks = self._resize_masks(masks)
        return {
            "file_name": record["file_name"],
            "image_name": record["image_name"],
            "height": height,
            "width": width,
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), np.float32)),
            "masks": torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32)),
            "ranks": ranks,
        }

    def _check_size(self, record):
        """The record's size against the image header, then the limits, before anything is
        decoded or rasterised (a forged 60000 x 60000 record would cost tens of GB)."""
        stored, displayed = read_image_size(record["file_name"])
        size = (record["height"], record["width"])
        if size not in (stored, displayed):
            raise DatasetError(
                f"{record['file_name']}: the record says {size[0]} x {size[1]} "
                f"(height x width) but the image is {stored[0]} x {stored[1]}"
            )
        if size != stored:
            # The EXIF-rotated size: the image is still read in stored order, as the original
            # reads it (docs/FIDELITY.md #20), so the GT masks may not line up with it.
            logger.warning(
                "%s: image is %dx%d (HxW) but the record says %dx%d (its EXIF-rotated size)",
                record["file_name"],
                *stored,
                *size,
            )
        check_record_size(record, self.max_pixels, self.max_record_pixels)

    def _resize(self, array, interpolation):
        """H x W (x 3) -> S x S (x 3); cv2 takes (width, height) like albumentations' Resize."""
        size = (self.image_size, self.image_size)
        return cv2.resize(np.ascontiguousarray(array), size, interpolation=interpolation)

    def _resize_masks(self, masks):
        """N x H x W -> N x S x S with nearest-neighbour interpolation."""
        if len(masks) == 0:
            return np.zeros((0, self.image_size, self.image_size), dtype=np.float32)
        return np.stack([self._resize(mask, cv2.INTER_NEAREST) for mask in masks])
