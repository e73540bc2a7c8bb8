"""Dataset registration: lazy loading, no double registration, re-rooting, the parity bundle."""

import json
import logging
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from seqrank.data import SOR_SPLITS, load_sor_json, register_sor_dataset, register_sor_datasets

SYNTHETIC_NAME = "seqrank_test_synthetic_sor"


def _snapshot(name):
    if name not in DatasetCatalog:
        return None
    return DatasetCatalog[name], MetadataCatalog.get(name).as_dict()


def _restore(name, saved):
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    if name in MetadataCatalog:
        MetadataCatalog.remove(name)
    if saved is not None:
        func, metadata = saved
        DatasetCatalog.register(name, func)
        MetadataCatalog.get(name).set(**metadata)


@pytest.fixture(autouse=True)
def isolated_catalog():
    """Leave the global catalogs as other test modules may have set them up."""
    names = list(SOR_SPLITS) + [SYNTHETIC_NAME]
    saved = {name: _snapshot(name) for name in names}
    yield
    for name in names:
        _restore(name, saved[name])


def _write_json(path, records, comment="tiny test set"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"__comment__": comment, "data": records}))


def _record(name="img_0"):
    square = [2, 2, 10, 2, 10, 10, 2, 10]
    return {
        "image_name": name,
        "height": 16,
        "width": 20,
        "annotations": [{"category_id": 1, "segmentation": [square]}],
    }


def test_registers_all_splits_lazily(tmp_path):
    register_sor_datasets(tmp_path)  # nothing exists under tmp_path: must not be read yet
    for name, (dataset_id, split) in SOR_SPLITS.items():
        assert name in DatasetCatalog
        meta = MetadataCatalog.get(name)
        assert meta.json_file == str(tmp_path / dataset_id / f"{dataset_id}_{split}.json")
        assert meta.image_root == str(tmp_path / dataset_id / "images" / split)
        assert not hasattr(meta, "evaluator_type")  # the trainer always builds SOREvaluator
        # No thing_classes: category_id holds rank values, which detectron2's class histogram
        # would reject as out-of-range classes.
        assert not hasattr(meta, "thing_classes")
    with pytest.raises(FileNotFoundError, match="assr_val.json"):
        DatasetCatalog.get("assr_val")


def test_same_root_is_a_noop(tmp_path):
    register_sor_datasets(tmp_path)
    loader = DatasetCatalog["assr_test"]
    register_sor_datasets(str(tmp_path))
    assert DatasetCatalog["assr_test"] is loader


def test_new_root_reregisters_and_logs(tmp_path, caplog):
    register_sor_datasets(tmp_path / "a")
    _write_json(tmp_path / "b" / "assr" / "assr_test.json", [_record()])
    with caplog.at_level(logging.INFO, logger="seqrank.data.datasets"):
        register_sor_datasets(tmp_path / "b")
    assert "Re-registering dataset 'assr_test'" in caplog.text
    assert MetadataCatalog.get("assr_test").json_file.startswith(str(tmp_path / "b"))
    records = DatasetCatalog.get("assr_test")
    assert [r["image_name"] for r in records] == ["img_0"]
    assert records[0]["file_name"] == os.path.join(
        str(tmp_path / "b" / "assr" / "images" / "test"), "img_0.jpg"
    )


def test_generic_registration_and_comment_logged(tmp_path, caplog):
    json_file = tmp_path / "synthetic.json"
    _write_json(json_file, [_record("a"), _record("b")], comment="synthetic benchmark v1")
    register_sor_dataset(SYNTHETIC_NAME, json_file, tmp_path / "imgs")
    with caplog.at_level(logging.INFO, logger="seqrank.data.datasets"):
        records = DatasetCatalog.get(SYNTHETIC_NAME)
    assert "synthetic benchmark v1" in caplog.text
    assert [r["file_name"] for r in records] == [
        os.path.join(str(tmp_path / "imgs"), "a.jpg"),
        os.path.join(str(tmp_path / "imgs"), "b.jpg"),
    ]
    assert set(records[0]) == {"file_name", "image_name", "height", "width", "annotations"}


def test_stale_metadata_without_dataset_is_replaced(tmp_path):
    MetadataCatalog.get(SYNTHETIC_NAME).set(json_file="elsewhere.json")
    register_sor_dataset(SYNTHETIC_NAME, tmp_path / "x.json", tmp_path)
    assert MetadataCatalog.get(SYNTHETIC_NAME).json_file == str(tmp_path / "x.json")


def test_parity_bundle_assr_test(parity_dir):
    register_sor_datasets(parity_dir / "datasets")
    records = DatasetCatalog.get("assr_test")
    assert len(records) == 4
    assert [r["image_name"] for r in records] == [f"parity_fpn_00{i}" for i in range(4)]
    for record in records:
        assert os.path.isfile(record["file_name"]), record["file_name"]
        assert record["height"] > 0 and record["width"] > 0
        assert record["annotations"]


def test_load_sor_json_keeps_annotations(parity_dir):
    root = parity_dir / "datasets" / "assr"
    records = load_sor_json(root / "assr_train.json", root / "images" / "train")
    with open(root / "assr_train.json") as f:
        raw = json.load(f)["data"]
    assert [r["annotations"] for r in records] == [r["annotations"] for r in raw]


def test_other_dataset_names_register_in_the_same_layout(tmp_path):
    import shutil

    from tests.conftest import PARITY

    shutil.copytree(PARITY / "datasets" / "assr", tmp_path / "mysor")
    (tmp_path / "mysor" / "assr_test.json").rename(tmp_path / "mysor" / "mysor_test.json")
    try:
        register_sor_datasets(tmp_path, ("mysor_test",))
        records = DatasetCatalog.get("mysor_test")
        assert len(records) == 4
        assert records[0]["file_name"].startswith(str(tmp_path / "mysor" / "images" / "test"))
    finally:
        DatasetCatalog.remove("mysor_test")
        MetadataCatalog.remove("mysor_test")
