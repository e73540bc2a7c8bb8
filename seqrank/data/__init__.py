"""SOR data path: dataset registration, image reading and the dataset mapper."""

from .annotations import rasterize_annotations
from .datasets import SOR_SPLITS, load_sor_json, register_sor_dataset, register_sor_datasets
from .image_io import read_rgb
from .mapper import SORDatasetMapper

__all__ = [
    "SOR_SPLITS",
    "SORDatasetMapper",
    "load_sor_json",
    "rasterize_annotations",
    "read_rgb",
    "register_sor_dataset",
    "register_sor_datasets",
]
