"""Single-image inference for the demos: build the model, load weights, rank one RGB image."""

import cv2
import numpy as np
import torch
from detectron2.modeling import build_model

from .checkpoint import SeqRankCheckpointer

__all__ = ["SeqRankPredictor", "preprocess"]


def preprocess(image_rgb, size):
    """``H x W x 3`` uint8 RGB -> ``3 x S x S`` float32 (0..255), resized like the test mapper."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image_rgb.shape}")
    resized = cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()


class SeqRankPredictor:
    """``predictor(image_rgb)`` returns the ranked result dict of one image (see ``SeqRank``)."""

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        SeqRankCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.model.eval()
        self.size = cfg.INPUT.FT_SIZE_TEST

    def __call__(self, image_rgb, image_name=0):
        height, width = image_rgb.shape[:2]
        inputs = {
            "image": preprocess(image_rgb, self.size),
            "height": height,
            "width": width,
            "image_name": image_name,
        }
        with torch.inference_mode():
            return self.model([inputs])[0]
