from .evaluator import SOREvaluator, make_record, metrics_table, write_json_atomic
from .metrics import aggregate, image_metrics

__all__ = [
    "SOREvaluator",
    "aggregate",
    "image_metrics",
    "make_record",
    "metrics_table",
    "write_json_atomic",
]
