"""Names of the synthetic variants: the scripts generate the data a config's dataset names."""

import json
from pathlib import Path

import pytest

from seqrank.data.synthetic import parse_synthetic_id, synthetic_id


@pytest.mark.parametrize(
    "order, min_objects, name",
    [("chain", 1, "synsor"), ("global", 1, "synsor_global"), ("global", 2, "synsor_global_min2"),
     ("chain", 3, "synsor_min3")],
)  # fmt: skip
def test_names_round_trip(order, min_objects, name):
    assert synthetic_id(order, min_objects) == name
    # the default order (chain) is not spelled out in the name
    assert parse_synthetic_id(name) == ((order if order in name else None), min_objects)


def test_order_token_anywhere_and_default_chain():
    assert parse_synthetic_id("synsor_min2_global") == ("global", 2)
    assert parse_synthetic_id("synsor_chain") == ("chain", 1)
    assert parse_synthetic_id("synsor_v2") == (None, 1)


@pytest.mark.parametrize("bad", ["assr", "synsorx", "my_synsor", "synsor_min0", "synsor_min7"])
def test_bad_names_are_refused(bad):
    with pytest.raises(ValueError):
        parse_synthetic_id(bad)


def test_bad_min_objects_is_refused():
    with pytest.raises(ValueError, match="between 1 and 6"):
        synthetic_id("global", 0)


def test_the_name_does_not_change_the_data(tmp_path):
    from seqrank.data.synthetic import make_synthetic_sor

    folders = [
        make_synthetic_sor(tmp_path, name=name, num_train=2, num_test=1, height=64, width=64,
                           order="global", min_objects=2, progress=False)
        for name in ("synsor_global_min2", "other")
    ]  # fmt: skip
    for split in ("train", "test"):
        a, b = (sorted((Path(f) / "images" / split).iterdir()) for f in folders)
        assert len(a) == len(b) > 0
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
        records = [json.loads((Path(f) / f"{n}_{split}.json").read_text())["data"]
                   for f, n in zip(folders, ("synsor_global_min2", "other"))]  # fmt: skip
        assert [r["annotations"] for r in records[0]] == [r["annotations"] for r in records[1]]
