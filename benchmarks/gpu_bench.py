"""GPU benchmark (prepared for a CUDA machine; exits with a message where CUDA is missing).

1. Inference, as in ``benchmarks.bench_inference`` but on CUDA: baseline (reference path, fp32)
   vs project (fast path) in fp32 and under bf16 autocast, batch 1 and 4, for the tiny parity
   model at 200 / 384 and Swin-L (``configs/swinL_correct.yaml``, random weights) at 384 / 800.
   The bf16 outputs are compared with the fp32 ones: objects-per-image agreement, max |d| of
   scores and saliency and the min / mean mask IoU over the common prefix of each ranking.
2. Training step time of ``configs/swinL_correct.yaml`` at 800 x 800, batch 8 (random weights,
   synthetic ellipse masks, fp16 AMP with a GradScaler as detectron2's AMPTrainer, the project's
   optimizer with full-model clipping).

Usage: ``python -m benchmarks.gpu_bench [--reps 10] [--train-steps 10] [--train-batch 8]``.
"""

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from detectron2.modeling import build_model

from benchmarks.bench_inference import MODES, compare, set_mode, swin_model, tiny_model
from seqrank.engine import build_cfg
from seqrank.engine.optimizer import build_seqrank_optimizer

SETTINGS = [("tiny", 200), ("tiny", 384), ("swinL", 384), ("swinL", 800)]


def _timed(fn, reps):
    """Median seconds of ``fn()`` over ``reps`` runs after one warm-up; returns (s, output)."""
    out = fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _infer(model, images, batch, dtype=None):
    def run():
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            if batch == 1:
                return [model([x])[0] for x in images]
            return model(images)

    return run


def bf16_deviation(fp32, bf16):
    """Agreement of bf16 outputs with fp32 ones (no assertion: bf16 may reorder close calls)."""
    same_num = sum(a["num"] == b["num"] for a, b in zip(fp32, bf16))
    score, ious = 0.0, []
    for a, b in zip(fp32, bf16):
        k = min(a["num"], b["num"])
        if k:
            pairs = np.subtract(
                a["scores"][:k] + a["saliency"][:k], b["scores"][:k] + b["saliency"][:k]
            )
            score = max(score, float(np.abs(pairs).max()))
        for x, y in zip(a["masks"][:k], b["masks"][:k]):
            union = np.logical_or(x > 0.5, y > 0.5).sum()
            ious.append(1.0 if union == 0 else np.logical_and(x > 0.5, y > 0.5).sum() / union)
    ious = ious or [1.0]
    return (
        f"num {same_num}/{len(fp32)}, max|d| {score:.1e}, "
        f"IoU min {min(ious):.3f} mean {np.mean(ious):.3f}"
    )


def inference_table(reps):
    rows = []
    for name, size in SETTINGS:
        if name == "tiny":
            model, images = tiny_model(size, device="cuda")
        else:
            model, images = swin_model(size, 4, device="cuda")
        for batch in (1, 4):
            torch.cuda.reset_peak_memory_stats()
            set_mode(model, MODES["baseline"])
            t_base, base = _timed(_infer(model, images, batch), reps)
            mem_base = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
            set_mode(model, MODES["project"])
            t_fast, fast = _timed(_infer(model, images, batch), reps)
            mem_fast = torch.cuda.max_memory_allocated() / 2**20
            t_bf16, bf16 = _timed(_infer(model, images, batch, torch.bfloat16), reps)
            worst = compare(base, fast)
            ips = [len(images) / t for t in (t_base, t_fast, t_bf16)]
            rows.append(
                f"{name}@{size} b{batch:<2} {ips[0]:9.2f} {ips[1]:9.2f} {ips[2]:9.2f} "
                f"x{ips[1] / ips[0]:5.2f} x{ips[2] / ips[0]:5.2f} {mem_base:8.0f} {mem_fast:8.0f} "
                f"IoU>={worst['mask_iou']:.3f} | bf16: {bf16_deviation(fast, bf16)}"
            )
        del model
        torch.cuda.empty_cache()
    print("\ninference (images/s; peak MiB allocated; parity of project fp32 vs baseline)")
    print("setting        baseline   project  proj-bf16  ratio bf16-r  MiB-base MiB-proj  parity")
    print("\n".join(rows))


def _ellipse_masks(gen, count, size):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = []
    for _ in range(count):
        scale, offset = torch.tensor([0.6, 0.6, 0.2, 0.2]), torch.tensor([0.2, 0.2, 0.05, 0.05])
        cy, cx, ry, rx = (torch.rand(4, generator=gen) * scale + offset) * size
        masks.append((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).float())
    return torch.stack(masks)


def training_table(steps, batch, size=800):
    cfg = build_cfg(
        "configs/swinL_correct.yaml",
        ["MODEL.DEVICE", "cuda", "MODEL.WEIGHTS", "", "INPUT.FT_SIZE_TRAIN", str(size)],
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = build_seqrank_optimizer(cfg, model)
    scaler = torch.amp.GradScaler("cuda")
    gen = torch.Generator().manual_seed(0)
    data = []
    for i in range(batch):
        n = int(torch.randint(1, 6, (1,), generator=gen))
        data.append(
            {
                "image": torch.rand(3, size, size, generator=gen) * 255,
                "masks": _ellipse_masks(gen, n, size),
                "ranks": list(range(n, 0, -1)),
                "height": size,
                "width": size,
                "image_name": f"synthetic_{i}",
            }
        )

    def step():
        with torch.autocast("cuda", dtype=torch.float16):
            losses = model(data)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()

    torch.cuda.reset_peak_memory_stats()
    try:
        for _ in range(3):
            step()
        seconds, _ = _timed(step, steps)
    except torch.cuda.OutOfMemoryError:
        print(f"\ntraining swinL_correct @{size} batch {batch}: out of memory")
        return
    mem = torch.cuda.max_memory_allocated() / 2**30
    print("\ntraining step (swinL_correct, fp16 AMP, random weights, synthetic masks)")
    print("size  batch  s/step  images/s  peak GiB")
    print(f"{size:4d}  {batch:5d}  {seconds:6.3f}  {batch / seconds:8.2f}  {mem:8.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: CUDA is not available on this machine; nothing to do.")
        return 0
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    inference_table(args.reps)
    if not args.skip_train:
        training_table(args.train_steps, args.train_batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
