"""Verifications used by ``benchmarks/gpu_smoke.sh`` (one subcommand per check; exit 0 = pass).

    python -m benchmarks.smoke_checks train-run OUTPUT_DIR LOG --iters 20 [--precision fp16]
    python -m benchmarks.smoke_checks eval-run OUTPUT_DIR DATASET LOG
    python -m benchmarks.smoke_checks demo-run OUTPUT_DIR STEM
    python -m benchmarks.smoke_checks matcher --device cuda
    python -m benchmarks.smoke_checks ranking-syncs --device cuda

Each prints one line saying what it found; a failed check says why on stderr and exits 1.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import torch

FORBIDDEN = ("FutureWarning", "DeprecationWarning", "Traceback")


class CheckFailed(Exception):
    pass


def _expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def _clean_log(log):
    text = Path(log).read_text(errors="replace")
    for word in FORBIDDEN:
        _expect(word not in text, f"{log}: contains {word}")
    return text


def train_run(args):
    out = Path(args.output_dir)
    _clean_log(args.log)
    _expect((out / "model_final.pth").is_file(), f"{out}: no model_final.pth")
    lines = (out / "metrics.json").read_text().splitlines()
    records = [json.loads(line) for line in lines if "total_loss" in line]
    _expect(records, f"{out}/metrics.json: no losses")
    last = records[-1]
    _expect(last["iteration"] == args.iters - 1, f"last logged iteration {last['iteration']}")
    _expect(math.isfinite(last["total_loss"]), f"total_loss {last['total_loss']}")
    trainer_log = (out / "log.txt").read_text()
    if args.precision:
        line = f"Mixed precision: {args.precision} autocast"
        _expect(line in trainer_log, f"{out}/log.txt: no '{line}'")
    return f"{args.iters} iterations, last total_loss {last['total_loss']:.3f}"


def eval_run(args):
    _clean_log(args.log)
    path = Path(args.output_dir) / f"{args.dataset}_metrics.json"
    _expect(path.is_file(), f"{path} missing")
    metrics = json.loads(path.read_text())
    _expect("sa_sor" in metrics and "mae" in metrics, f"{path}: no sa_sor / mae")
    return f"sa_sor {metrics['sa_sor']}, mae {metrics['mae']:.4f}"


def demo_run(args):
    out = Path(args.output_dir)
    for suffix in ("_overlay.png", "_colormap.png", ".json"):
        _expect((out / f"{args.stem}{suffix}").is_file(), f"{out}/{args.stem}{suffix} missing")
    ranked = json.loads((out / f"{args.stem}.json").read_text())
    _expect(ranked.get("num") == len(ranked.get("masks", [])), f"{args.stem}.json: num != masks")
    return f"outputs written, {ranked['num']} ranked object(s)"


def matcher(args):
    """The issue-17 case (62 % object, logits +-12, 12544 points) under fp16 autocast."""
    from seqrank.modeling.matcher import match_cost, match_image

    device = torch.device(args.device)
    size, low = 192, 48
    gt = torch.zeros(2, size, size, device=device)
    side = round(0.62**0.5 * size)
    gt[0, :side, :side] = 1
    gt[1, -30:, -30:] = 1
    pred = torch.full((4, low, low), -12.0, device=device)
    pred[0, : side // 4, : side // 4] = 12.0
    pred[1] = 12.0
    pred[2, -8:, -8:] = 12.0
    scores = torch.tensor([[2.0], [1.0], [0.5], [-1.0]], device=device)
    results = {}
    for dtype in (None, torch.float16):
        torch.manual_seed(0)
        with torch.autocast(device.type, dtype=torch.float16, enabled=dtype is not None):
            half_pred = pred if dtype is None else pred.to(dtype)
            cost = match_cost(half_pred, scores, gt, 12544, 5.0, 5.0)
            torch.manual_seed(0)
            results[dtype] = (cost, match_image(half_pred, scores, gt, 12544, 5.0, 5.0))
    cost, (qi, ti) = results[torch.float16]
    _expect(bool(torch.isfinite(cost).all()), f"non-finite costs under fp16 autocast: {cost}")
    expected = results[None][1]
    _expect(qi.tolist() == expected[0].tolist(), f"assignment {qi} vs fp32 {expected[0]}")
    _expect(ti.tolist() == expected[1].tolist(), f"targets {ti} vs fp32 {expected[1]}")
    return f"finite float32 costs, assignment {qi.tolist()} = fp32"


def ranking_syncs(args):
    """Host syncs of the ranking loop: CUDA's sync debug mode on a GPU, the counter on a CPU."""
    from detectron2.modeling import build_model

    from benchmarks.bench_device_paths import TINY, CudaSyncCounter, count_ranking_reads
    from seqrank.engine import build_cfg

    cfg = build_cfg(TINY, ["MODEL.DEVICE", args.device, "INPUT.FT_SIZE_TEST", "128"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    images = [
        {"image": torch.rand(3, 128, 128, generator=gen) * 255, "height": 96, "width": 120}
        for _ in range(4)
    ]
    counter = CudaSyncCounter() if torch.device(args.device).type == "cuda" else None
    reads, steps = count_ranking_reads(model, images, counter)
    _expect(reads <= steps, f"{reads} host syncs in {steps} ranking steps (expected one per step)")
    return f"{reads} host syncs in {steps} ranking steps"


COMMANDS = {
    "train-run": train_run,
    "eval-run": eval_run,
    "demo-run": demo_run,
    "matcher": matcher,
    "ranking-syncs": ranking_syncs,
}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.smoke_checks")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train-run")
    train.add_argument("output_dir")
    train.add_argument("log")
    train.add_argument("--iters", type=int, required=True)
    train.add_argument("--precision", choices=["fp16", "bf16"])
    evaluation = sub.add_parser("eval-run")
    evaluation.add_argument("output_dir")
    evaluation.add_argument("dataset")
    evaluation.add_argument("log")
    demo = sub.add_parser("demo-run")
    demo.add_argument("output_dir")
    demo.add_argument("stem")
    for name in ("matcher", "ranking-syncs"):
        sub.add_parser(name).add_argument("--device", default="cuda")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        print(COMMANDS[args.command](args))
    except (CheckFailed, OSError, ValueError, KeyError) as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
