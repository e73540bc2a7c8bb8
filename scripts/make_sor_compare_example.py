"""Make the bundled example of ``python -m scripts.sor_compare`` (``assets/sor_compare/``).

Deterministic: the first four scenes with at least three objects of the synthetic SOR benchmark
(docs/SYNTHETIC.md; seed 2024, test split, 240 x 320) as an ``assr_test`` dataset, and the rank
maps of two made-up methods:

* ``MethodA/``: written as SeqRank's ``TEST.EVAL_SAVE`` writes them
  (``<image>_count_<n>.png``, object k of n grey ``255 * linspace(1, 0.5, n)[k]``): the GT objects
  with their boundaries eroded or dilated by 1 px, in the GT order except that the last two
  objects of the second image are swapped; the fourth image has one extra, spurious object;
* ``MethodB/``: written as ASSR releases its maps (``<image>.png``, greys 255/229/204/178/153):
  the GT objects dilated by 3 px, the two most salient ones swapped and the least salient one
  missed.

Usage: ``python -m scripts.make_sor_compare_example [--output assets/sor_compare]``.
"""

import argparse
import json
import os

import cv2
import numpy as np

from seqrank.data.synthetic import render_scene, scene_to_record
from seqrank.evaluation.protocols import ASSR_GREY
from seqrank.utils.colormap import render_rank_map

SEED, HEIGHT, WIDTH, IMAGES = 2024, 240, 320, 4


def _scenes():
    index = 0
    while True:
        scene = render_scene(SEED, "test", index, HEIGHT, WIDTH)
        if len(scene.objects) >= 3:
            yield f"example_{index}", scene
        index += 1


def _morph(mask, radius, grow):
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    op = cv2.dilate if grow else cv2.erode
    return op(mask.astype(np.uint8), kernel) > 0


def method_a(k, masks):
    masks = [_morph(m, 1, grow=j % 2 == 1) for j, m in enumerate(masks)]
    if k == 1:
        masks[-2], masks[-1] = masks[-1], masks[-2]
    if k == 3:
        spurious = np.zeros((HEIGHT, WIDTH), np.uint8)
        cv2.ellipse(spurious, (40, 200), (25, 15), 0, 0, 360, 1, -1)
        masks.append(spurious > 0)
    return f"_count_{len(masks)}", render_rank_map(masks, HEIGHT, WIDTH)


def method_b(k, masks):
    masks = [_morph(m, 3, grow=True) for m in masks]
    masks[0], masks[1] = masks[1], masks[0]
    grey = np.zeros((HEIGHT, WIDTH), np.uint8)
    for j in range(min(len(masks) - 1, len(ASSR_GREY)) - 1, -1, -1):
        grey[masks[j]] = ASSR_GREY[j]
    return "", grey


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="assets/sor_compare")
    args = parser.parse_args(argv)
    image_dir = os.path.join(args.output, "datasets", "assr", "images", "test")
    os.makedirs(image_dir, exist_ok=True)
    methods = {"MethodA": method_a, "MethodB": method_b}
    for name in methods:
        os.makedirs(os.path.join(args.output, name), exist_ok=True)
    records = []
    for k, (name, scene) in zip(range(IMAGES), _scenes()):
        cv2.imwrite(os.path.join(image_dir, name + ".jpg"), scene.image)
        records.append(scene_to_record(scene, name))
        masks = [scene.objects[i].mask for i in scene.order]
        for method, make in methods.items():
            suffix, grey = make(k, masks)
            cv2.imwrite(os.path.join(args.output, method, f"{name}{suffix}.png"), grey)
    comment = f"sor_compare example: synthetic scenes (seed {SEED}, {HEIGHT}x{WIDTH})"
    with open(os.path.join(args.output, "datasets", "assr", "assr_test.json"), "w") as f:
        json.dump({"__comment__": comment, "data": records}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
