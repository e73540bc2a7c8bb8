"""Dataset names of the synthetic benchmark's variants.

The scripts (``make demo``, the quick-schedule benchmark) generate the data a config names, so the
name carries the generator's parameters that change the data: ``synsor`` is the default ``chain``
order, a ``_global`` / ``_chain`` token names the order, and ``_min<N>`` the fewest objects per
image (``--min-objects N``). Examples: ``synsor``, ``synsor_global``, ``synsor_global_min2``.
"""

import re

from .ordering import ORDERS
from .rendering import check_min_objects

PREFIX = "synsor"
_MIN_TOKEN = re.compile(r"min(\d+)")


def synthetic_id(order="chain", min_objects=1):
    """The dataset id (folder name) the scripts use for a variant.

    ``("chain", 1)`` -> ``synsor``; ``("global", 1)`` -> ``synsor_global``; ``("global", 2)`` ->
    ``synsor_global_min2``.
    """
    parts = [PREFIX] + ([order] if order != "chain" else [])
    min_objects = check_min_objects(min_objects)
    parts += [f"min{min_objects}"] if min_objects != 1 else []
    return "_".join(parts)


def parse_synthetic_id(dataset_id):
    """``(order, min_objects)`` of a synthetic dataset id, ``order`` None when the name has none.

    Raises ValueError when ``dataset_id`` is not ``synsor`` or ``synsor_<tokens>``, or when a
    ``min<N>`` token is out of range.
    """
    if dataset_id != PREFIX and not dataset_id.startswith(PREFIX + "_"):
        raise ValueError(f"{dataset_id!r} is not a synthetic dataset name ({PREFIX}_*)")
    tokens = dataset_id.split("_")[1:]
    orders = [t for t in tokens if t in ORDERS]
    counts = [int(m.group(1)) for m in map(_MIN_TOKEN.fullmatch, tokens) if m]
    min_objects = check_min_objects(counts[0]) if counts else 1
    return (orders[0] if orders else None), min_objects
