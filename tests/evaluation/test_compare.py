"""Comparing methods: a results file and the rank maps rendered from it score the same; the
readers, resizing, missing/extra bookkeeping, saliency maps and the bootstrap."""

import json
import math

import cv2
import numpy as np
import pytest

from seqrank.data.synthetic import mask_to_polygons
from seqrank.evaluation.compare import CompareInputError, check_method_specs, parse_method_spec
from seqrank.evaluation.compare_report import build_comparison, render_outputs
from seqrank.evaluation.compare_stats import add_bootstrap, per_image_values
from seqrank.evaluation.protocols import (
    ASSR_GREY,
    PROTOCOLS,
    assr_rank_map,
    assr_saliency_ranks,
    assr_sor_from_ranks,
)
from seqrank.evaluation.results_eval import evaluate_results
from seqrank.evaluation.results_file import encode_mask, save_results
from seqrank.utils.colormap import render_rank_map
from tests.conftest import PARITY

H, W = 48, 64


def box(y0, y1, x0, x1, h=H, w=W):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# GT objects (most salient first) and predictions (rank order) of four images: disjoint,
# non-empty predicted masks, shuffled orders, an image without salient GT, and one with more
# than five predictions (only ASSR's top 5 are painted).
IMAGES = {
    "img_a": (
        [box(2, 20, 2, 20), box(25, 45, 5, 30), box(5, 30, 35, 60)],
        [box(3, 21, 2, 19), box(6, 30, 36, 60), box(25, 44, 5, 31)],
    ),
    "img_b": (
        [box(10, 40, 10, 30), box(10, 40, 35, 60)],
        [box(10, 40, 36, 60), box(11, 40, 10, 30), box(0, 5, 0, 10)],
    ),
    "img_c": ([], [box(0, 10, 0, 10)]),
    "img_d": (
        [box(0, 8, 8 * k, 8 * k + 7) for k in range(7)],
        [box(0, 8, 8 * k, 8 * k + 7) for k in (1, 0, 2, 3, 5, 4, 6)] + [box(30, 40, 0, 60)],
    ),
}


def write_dataset(root, images=IMAGES, h=H, w=W):
    records = []
    for name, (gts, _) in images.items():
        annotations = [
            {"category_id": len(gts) - k, "segmentation": mask_to_polygons(m)}
            for k, m in enumerate(gts)
        ]
        records.append({"image_name": name, "height": h, "width": w, "annotations": annotations})
    path = root / "datasets" / "assr" / "assr_test.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"data": records}))
    return root / "datasets", records


def write_results(path, images=IMAGES):
    results = {
        name: {"image_name": name, "masks": [encode_mask(m) for m in preds], "num": len(preds)}
        for name, (_, preds) in images.items()
    }
    save_results(path, results)
    return results


def write_rank_maps(folder, images=IMAGES, h=H, w=W):
    folder.mkdir()
    for name, (_, preds) in images.items():
        cv2.imwrite(str(folder / f"{name}_count_{len(preds)}.png"), render_rank_map(preds, h, w))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    dataset_root, records = write_dataset(root)
    results = write_results(root / "res.pth")
    write_rank_maps(root / "maps")
    return root, dataset_root, records, results


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def assert_same_summary(x, y):
    assert set(x) == set(y)
    for protocol in x:
        if x[protocol] is None:
            assert y[protocol] is None
            continue
        assert list(x[protocol]) == list(y[protocol])
        bad = [k for k in x[protocol] if not same(x[protocol][k], y[protocol][k])]
        assert not bad, (protocol, {k: (x[protocol][k], y[protocol][k]) for k in bad})


def run(setup, *preds, **kwargs):
    kwargs.setdefault("progress", False)
    return build_comparison("assr_test", list(preds), str(setup[1]), **kwargs)


def test_results_file_scores_what_the_evaluation_tool_scores(setup):
    root, _, records, results = setup
    comparison = run(setup, f"res={root / 'res.pth'}")
    expected, missing = evaluate_results(results, records, PROTOCOLS)
    assert missing == []
    assert_same_summary(comparison.methods["res"].summary, expected)


def test_rank_maps_rendered_from_the_results_file_give_an_identical_row(setup):
    root = setup[0]
    comparison = run(setup, f"res={root / 'res.pth'}", f"maps={root / 'maps'}")
    res, maps = comparison.methods["res"], comparison.methods["maps"]
    assert (res.kind, maps.kind) == ("results", "rankmap")
    assert_same_summary(res.summary, maps.summary)
    for a, b in zip(res.per_image, maps.per_image):
        va, vb = per_image_values(a), per_image_values(b)
        assert set(va) == set(vb) and all(same(va[k], vb[k]) for k in va)
    assert res.summary["seqrank"]["sa_sor_count"] == 3  # img_c has no GT object


def test_worker_processes_give_the_same_comparison(setup):
    root = setup[0]
    preds = (f"res={root / 'res.pth'}", f"maps={root / 'maps'}")
    one, two = run(setup, *preds, workers=1), run(setup, *preds, workers=2)
    for name in ("res", "maps"):
        assert_same_summary(one.methods[name].summary, two.methods[name].summary)
        for a, b in zip(one.methods[name].per_image, two.methods[name].per_image):
            va, vb = per_image_values(a), per_image_values(b)
            assert set(va) == set(vb) and all(same(va[k], vb[k]) for k in va)


def test_rank_maps_with_other_greys_and_half_size_score_the_same(setup, tmp_path):
    """ASSR-style greys (255, 229, ...) and maps at half size: resized by nearest neighbour."""
    folder, full = tmp_path / "half", tmp_path / "full"
    folder.mkdir()
    full.mkdir()
    for name, (_, preds) in IMAGES.items():
        grey = np.zeros((H, W), np.uint8)
        for k in range(len(preds) - 1, -1, -1):
            grey[preds[k]] = 250 - 20 * k
        small = cv2.resize(grey, (W // 2, H // 2), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(folder / f"{name}.png"), small)
        up = cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(full / f"{name}.png"), up)
    comparison = run(setup, f"half=rankmap:{folder}", f"full={full}")
    half = comparison.methods["half"]
    assert half.resized == list(IMAGES)
    assert_same_summary(half.summary, comparison.methods["full"].summary)
    assert comparison.methods["full"].resized == []


def test_missing_maps_are_empty_predictions_and_extra_files_are_counted(setup, tmp_path):
    root = setup[0]
    folder = tmp_path / "partial"
    folder.mkdir()
    for f in (root / "maps").iterdir():
        if not f.name.startswith("img_b"):
            (folder / f.name).write_bytes(f.read_bytes())
    (folder / "unrelated.png").write_bytes((root / "maps" / "img_a_count_3.png").read_bytes())
    (folder / "readme.txt").write_text("x")
    comparison = run(setup, f"partial={folder}")
    method = comparison.methods["partial"]
    assert method.missing == ["img_b"] and method.extra == ["readme.txt", "unrelated.png"]
    inputs = json.loads(render_outputs(comparison)["inputs.json"])["partial"]
    assert inputs["missing"] == ["img_b"] and inputs["images"] == 3 and inputs["kind"] == "rankmap"
    b = comparison.images.index("img_b")
    assert method.per_image[b]["seqrank"]["ap"] == pytest.approx(0.0, abs=1e-9)
    assert method.per_image[b]["irsr"] == 0.0  # no prediction scores 0 under irsr


def test_saliency_maps_are_scored_by_assr_only(setup, tmp_path):
    folder = tmp_path / "sal"
    folder.mkdir()
    ys, xs = np.mgrid[:H, :W]
    for name, (gts, _) in IMAGES.items():
        smooth = np.zeros((H, W))
        for k, m in enumerate(gts):
            smooth[m] = 0.9 - 0.1 * k
        smooth = cv2.GaussianBlur(smooth, (0, 0), 2) + 0.002 * xs
        cv2.imwrite(str(folder / f"{name}.png"), np.clip(smooth * 255, 0, 255).astype(np.uint8))
    comparison = run(setup, f"sal={folder}")
    method = comparison.methods["sal"]
    assert method.kind == "saliency"
    assert method.summary["seqrank"] is None and method.summary["irsr"] is None
    assert method.summary["assr"]["sor"] == pytest.approx(1.0)  # every order right
    assert 0 < method.summary["assr"]["mae"] < 0.2
    files = render_outputs(comparison)
    assert json.loads(files["comparison.json"])["sal"]["seqrank"] is None
    assert "–" in files["comparison.md"].decode()


def test_assr_saliency_ranks_mean_ties_and_zero():
    gts = np.stack([box(0, 4, 0, 4), box(0, 4, 4, 8), box(4, 8, 0, 8)])
    sal = np.zeros((H, W))
    sal[0:4, 0:4], sal[0:4, 4:8] = 100, 200  # object 1 brighter than object 0
    ranks = assr_saliency_ranks(sal, gts)
    assert ranks.tolist() == [2.0, 3.0, 0.0]  # object 2 has no saliency: not predicted
    assert assr_sor_from_ranks(ranks) == pytest.approx(-1.0)
    sal[0:4, 4:8] = 100  # tie: broken by object index
    assert assr_saliency_ranks(sal, gts).tolist() == [3.0, 2.0, 0.0]


def test_assr_map_of_a_rank_map_is_the_painted_masks():
    """Recolouring the resized map equals painting the resized masks (disjoint masks)."""
    from seqrank.evaluation.compare import Prediction, assr_pred_map
    from seqrank.evaluation.prediction_maps import rank_map_masks
    from seqrank.evaluation.protocols import ASSR_SIZE, resize_binary

    preds = IMAGES["img_d"][1]
    grey = render_rank_map(preds, H, W)
    values, masks, areas = rank_map_masks(grey)
    got = assr_pred_map(Prediction(masks, values.astype(float), grey, areas))
    assert np.array_equal(got, assr_rank_map(resize_binary(np.stack(preds), ASSR_SIZE)))
    assert set(np.unique(got)) == {0, *ASSR_GREY}


def test_bootstrap_is_seeded_paired_and_brackets_the_value(setup):
    root = setup[0]
    preds = (f"res={root / 'res.pth'}", f"maps={root / 'maps'}")
    first = run(setup, *preds)
    add_bootstrap(first, 200, seed=3)
    again = run(setup, *preds)
    add_bootstrap(again, 200, seed=3)
    for protocol, metric in (("seqrank", "sa_sor"), ("irsr", "sa_sor"), ("assr", "mae")):
        ci = first.methods["res"].summary[protocol][f"{metric}_ci95"]
        value = first.methods["res"].summary[protocol][metric]
        assert ci[0] <= value + 1e-4 and value - 1e-4 <= ci[1]
        assert ci == again.methods["res"].summary[protocol][f"{metric}_ci95"]
        assert ci == first.methods["maps"].summary[protocol][f"{metric}_ci95"]


def test_method_specs():
    assert parse_method_spec("A=x/y").kind is None
    assert parse_method_spec("A=rankmap:x").path == "x"
    assert parse_method_spec("A=saliency:x").kind == "saliency"
    assert parse_method_spec("A=c:/odd:path").path == "c:/odd:path"
    for bad in ("A", "=x", "A=", "A=rankmap:"):
        with pytest.raises(CompareInputError, match="--pred"):
            parse_method_spec(bad)
    with pytest.raises(CompareInputError, match="'A' is given twice"):
        check_method_specs([parse_method_spec("A=x"), parse_method_spec("A=y")])


def test_results_mask_of_another_size_is_an_error(setup, tmp_path):
    images = {"img_a": (IMAGES["img_a"][0], [box(0, 5, 0, 5, h=H + 1)])}
    write_results(tmp_path / "wrong.pth", images)
    with pytest.raises(CompareInputError, match="img_a' mask 0 has size .* GT image is 48 x 64"):
        run(setup, f"wrong={tmp_path / 'wrong.pth'}")


def test_parity_results_and_their_rank_maps(tmp_path):
    """The parity bundle's hand-made results overlap: irsr still agrees there, while seqrank
    and assr see the overlap resolved differently (the rank map keeps the most salient object,
    ASSR's painting the least salient one)."""
    from seqrank.evaluation.results_file import decode_masks, load_results

    results = load_results(PARITY / "results_handmade.pth")
    records = json.loads((PARITY / "datasets/assr/assr_test.json").read_text())["data"]
    sizes = {r["image_name"]: (r["height"], r["width"]) for r in records}
    folder = tmp_path / "maps"
    folder.mkdir()
    for name, record in results.items():
        masks = decode_masks(record)
        cv2.imwrite(
            str(folder / f"{name}_count_{len(masks)}.png"), render_rank_map(masks, *sizes[name])
        )
    comparison = build_comparison(
        "assr_test",
        [f"res={PARITY / 'results_handmade.pth'}", f"maps={folder}"],
        str(PARITY / "datasets"),
        progress=False,
        workers=2,
    )
    res, maps = (comparison.methods[k].summary for k in ("res", "maps"))
    assert res["irsr"] == maps["irsr"]
    assert res["seqrank"]["mae"] == maps["seqrank"]["mae"]  # union maps are the same
    assert res["seqrank"]["sa_sor"] == pytest.approx(-0.05, abs=1e-4)
