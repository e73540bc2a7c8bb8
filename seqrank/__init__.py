"""SeqRank: Sequential Ranking of Salient Objects (Guan & Lau, AAAI 2024) on Detectron2."""

import warnings

# detectron2 (pinned commit) calls torch.jit.script at import; torch >= 2.10 warns about it each
# time. Not ours to fix and not news to a user: filtered once here, before detectron2 is imported.
warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning
)

from . import data, modeling  # noqa: E402,F401  (registers datasets helpers and model components)
from .config import add_seqrank_config, merge_config_file  # noqa: E402

__all__ = ["add_seqrank_config", "merge_config_file"]
