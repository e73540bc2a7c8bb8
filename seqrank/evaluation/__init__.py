from .evaluator import SOREvaluator, metrics_table
from .metrics import aggregate, image_metrics
from .results_file import make_record

__all__ = [
    "SOREvaluator",
    "aggregate",
    "image_metrics",
    "make_record",
    "metrics_table",
]
