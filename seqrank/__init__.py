"""SeqRank: Sequential Ranking of Salient Objects (Guan & Lau, AAAI 2024) on Detectron2."""

from . import data, modeling  # noqa: F401  (registers datasets helpers and model components)
from .config import add_seqrank_config, merge_config_file

__all__ = ["add_seqrank_config", "merge_config_file"]
