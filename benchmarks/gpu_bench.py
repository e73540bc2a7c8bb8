"""GPU benchmark (prepared for a CUDA machine; exits with a message where CUDA is missing).

Needs only the repository (no ``../shared``): every model has random weights (seeded), the tiny
rows use the quick-schedule config (``configs/quick_schedules/synsor_tiny.yaml``; ``--tiny-weights``
loads a trained checkpoint instead).

1. Inference, as in ``benchmarks.bench_inference`` but on CUDA: baseline (reference path, fp32)
   vs project (fast path) in each ``TEST.PRECISION`` (fp32, bf16, fp16: ``model.set_precision``,
   autocast with float32 decisions), batch 1 and 4, for the tiny model at 128 / 384 and Swin-L
   (``configs/swinL_correct.yaml``) at 384 / 800. Parity of project fp32 vs baseline is checked
   per row: a row outside the tolerances says so (e.g. an argmax flip on a near-tie) and the run
   goes on; the exit status is 1 if any row failed. The bf16 and fp16 outputs are compared with
   the fp32 ones: objects-per-image agreement, max |d| of scores and saliency and the min / mean
   mask IoU over the common prefix of each ranking. A precision the device cannot run (bf16 on a
   GPU without bfloat16) is shown as ``n/a``.
2. Training step of ``configs/swinL_correct.yaml`` at 800 x 800, batch 8 (synthetic ellipse
   masks) through the project's training loop (``SeqRankAMPTrainer``: fp16 with a GradScaler and
   bf16), with the project's optimizer and full-model clipping.
3. Device paths: the optimizer step with one group per parameter vs merged groups, the host to
   device copy of a training batch (pageable vs pinned), and a Swin-L training step with cuDNN
   autotuning off vs on.

Usage: ``python -m benchmarks.gpu_bench [--reps 10] [--train-steps 10] [--train-batch 8]
[--only tiny|swinL] [--skip-train] [--train-model swinL|tiny] [--train-size 800]``. ``--device
cpu`` runs the same code on the CPU (for development: slow, and without memory figures), e.g.
``--device cpu --only tiny --train-model tiny --train-size 64 --train-batch 2 --reps 1``.
"""

import argparse
import copy
import statistics
import sys
import time

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import seqrank  # noqa: F401  (registers the model)
from benchmarks.bench_inference import MODES, REPO, compare, set_mode, swin_model
from seqrank.checkpoint import SeqRankCheckpointer
from seqrank.engine import SeqRankAMPTrainer, build_cfg
from seqrank.engine.optimizer import build_seqrank_optimizer
from seqrank.modeling.precision import resolve_precision
from seqrank.utils.device import to_device

TINY = str(REPO / "configs" / "quick_schedules" / "synsor_tiny.yaml")
SWIN = str(REPO / "configs" / "swinL_correct.yaml")
SETTINGS = [("tiny", 128), ("tiny", 384), ("swinL", 384), ("swinL", 800)]


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, reps, device):
    """Median seconds of ``fn()`` over ``reps`` runs after one warm-up; returns (s, output)."""
    out = fn()
    _sync(device)
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _reset_peak(device):
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device):
    if torch.device(device).type != "cuda":
        return float("nan")
    return torch.cuda.max_memory_allocated() / 2**20


def tiny_model(size, device, weights=None):
    """The quick-schedule model (random weights unless ``weights``) and 4 random images."""
    cfg = build_cfg(TINY, ["MODEL.DEVICE", device, "INPUT.FT_SIZE_TEST", str(size)])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if weights:
        SeqRankCheckpointer(model).load(weights)
    gen = torch.Generator().manual_seed(1)
    images = [
        {
            "image": torch.rand(3, size, size, generator=gen) * 255,
            "height": 240,
            "width": 320,
            "image_name": f"random_{i}",
        }
        for i in range(4)
    ]
    return model, images


def _infer(model, images, batch, precision="fp32"):
    def run():
        model.set_precision(precision)
        with torch.no_grad():
            if batch == 1:
                return [model([x])[0] for x in images]
            return model(images)

    return run


def precision_deviation(fp32, reduced):
    """Agreement of bf16 / fp16 outputs with fp32 ones (no assertion: they may reorder close
    calls)."""
    same_num = sum(a["num"] == b["num"] for a, b in zip(fp32, reduced))
    score, ious = 0.0, []
    for a, b in zip(fp32, reduced):
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


def parity(reference, candidate):
    """``(ok, text)``: the parity tolerances of ``bench_inference.compare``, without aborting."""
    try:
        worst = compare(reference, candidate)
    except AssertionError as exc:
        counts = [(a["num"], b["num"]) for a, b in zip(reference, candidate)]
        differ = sum(a != b for a, b in counts)
        detail = f"{differ} image(s) with another object count" if differ else str(exc)
        return False, f"PARITY FAIL ({detail}; objects per image {counts})"
    return True, f"IoU>={worst['mask_iou']:.3f}"


def inference_table(reps, device, only=None, tiny_weights=None):
    """Prints one row per setting and batch; returns the number of rows that failed parity."""
    rows, failed = [], 0
    for name, size in SETTINGS:
        if only and name != only:
            continue
        if name == "tiny":
            model, images = tiny_model(size, device, tiny_weights)
        else:
            model, images = swin_model(size, 4, device=device)
        for batch in (1, 4):
            _reset_peak(device)
            set_mode(model, MODES["baseline"])
            t_base, base = _timed(_infer(model, images, batch), reps, device)
            mem_base = _peak_mib(device)
            _reset_peak(device)
            set_mode(model, MODES["project"])
            t_fast, fast = _timed(_infer(model, images, batch), reps, device)
            mem_fast = _peak_mib(device)
            ok, check = parity(base, fast)
            failed += not ok
            ips = [len(images) / t for t in (t_base, t_fast)]
            reduced = _reduced_precisions(model, images, batch, device, reps, (t_fast, fast))
            rows.append(
                f"{name}@{size} b{batch:<2} {ips[0]:9.2f} {ips[1]:9.2f} "
                f"{reduced['bf16'][0]} {reduced['fp16'][0]}    x{ips[1] / ips[0]:5.2f} "
                f"{mem_base:8.0f} {mem_fast:8.0f} {check} | bf16: {reduced['bf16'][1]} | "
                f"fp16: {reduced['fp16'][1]}"
            )
        del model
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    print("\ninference (images/s; x: vs project fp32; peak MiB allocated; parity of project fp32")
    print("vs baseline; bf16 / fp16 outputs vs project fp32)")
    print(
        "setting        baseline   project       bf16 (x)        fp16 (x) proj/base MiB-base "
        "MiB-proj  parity"
    )
    print("\n".join(rows))
    return failed


def _reduced_precisions(model, images, batch, device, reps, fp32):
    """``{precision: (images/s and ratio to fp32 as text, deviation from fp32)}`` for bf16 and
    fp16 (``n/a`` where the device falls back to fp32); ``fp32``: (seconds, outputs) of the
    project path in fp32."""
    t_fp32, fp32_out = fp32
    found = {}
    for precision in ("bf16", "fp16"):
        if resolve_precision(precision, device)[0] is None:
            found[precision] = (f"{'n/a':>15}", "n/a on this device")
            continue
        seconds, out = _timed(_infer(model, images, batch, precision), reps, device)
        ips = len(images) / seconds
        found[precision] = (
            f"{ips:8.2f} (x{t_fp32 / seconds:4.2f})",
            precision_deviation(fp32_out, out),
        )
    model.set_precision("fp32")
    return found


def _ellipse_masks(gen, count, size):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = []
    for _ in range(count):
        scale, offset = torch.tensor([0.6, 0.6, 0.2, 0.2]), torch.tensor([0.2, 0.2, 0.05, 0.05])
        cy, cx, ry, rx = (torch.rand(4, generator=gen) * scale + offset) * size
        masks.append((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).float())
    return torch.stack(masks)


def synthetic_batch(batch, size, seed=0):
    gen = torch.Generator().manual_seed(seed)
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
    return data


def _swin_training(size, device, config=SWIN):
    cfg = build_cfg(
        config,
        ["MODEL.DEVICE", device, "MODEL.WEIGHTS", "", "INPUT.FT_SIZE_TRAIN", str(size)],
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    return cfg, model


def _training_loop(cfg, model, data, precision):
    optimizer = build_seqrank_optimizer(cfg, model)
    if precision == "fp32":
        from detectron2.engine import SimpleTrainer

        trainer = SimpleTrainer(model, _repeat(data), optimizer)
    else:
        trainer = SeqRankAMPTrainer(model, _repeat(data), optimizer, precision=precision)
    storage = EventStorage(0)

    def step():
        with storage:
            trainer.iter = storage.iter
            trainer.run_step()
            storage.step()

    return step


def _repeat(data):
    while True:
        yield data


def training_table(steps, batch, device, size=800, config=SWIN):
    name = "swinL_correct" if config == SWIN else "synsor_tiny"
    print(f"\ntraining step ({name}, SeqRankAMPTrainer, random weights, synthetic masks)")
    print("precision  size  batch  s/step  images/s  peak GiB")
    data = synthetic_batch(batch, size)
    for precision in ("fp16", "bf16"):
        cfg, model = _swin_training(size, device, config)
        step = _training_loop(cfg, model, data, precision)
        _reset_peak(device)
        try:
            for _ in range(3):
                step()
            seconds, _ = _timed(step, steps, device)
        except torch.cuda.OutOfMemoryError:
            print(f"{precision:<9} {size:5d}  {batch:5d}  out of memory (try --train-batch)")
            continue
        finally:
            del step, model  # the loop holds the model and its optimizer state
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()
        mem = _peak_mib(device) / 1024
        speed = batch / seconds
        print(f"{precision:<9} {size:5d}  {batch:5d}  {seconds:6.3f}  {speed:8.2f}  {mem:8.1f}")


def device_paths_table(reps, device, size=800, batch=8, config=SWIN):
    """Before / after of the issue-17 device paths that only a GPU can time."""
    print("\ndevice paths (median s; before -> after)")
    cfg, model = _swin_training(size, device, config)
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen).to(p.device)
    timings = {}
    for merge in (False, True):
        opt = build_seqrank_optimizer(cfg, model, merge_groups=merge)
        opt.step()
        timings[merge], _ = _timed(opt.step, reps, device)
        groups = len(opt.param_groups)
        timings[f"groups{merge}"] = groups
        del opt
    print(
        f"  optimizer step, {timings['groupsFalse']} -> {timings['groupsTrue']} groups: "
        f"{timings[False]:.4f} -> {timings[True]:.4f}  x{timings[False] / timings[True]:.2f}"
    )
    model.zero_grad(set_to_none=True)
    data = synthetic_batch(batch, size)
    tensors = [x["image"] for x in data] + [x["masks"] for x in data]
    plain, _ = _timed(lambda: [t.to(device) for t in tensors], reps, device)
    pinned, _ = _timed(lambda: to_device(tensors, device), reps, device)
    print(
        f"  batch {batch} @{size} to the device, pageable -> pinned one-copy: "
        f"{plain:.4f} -> {pinned:.4f}  x{plain / pinned:.2f}"
    )
    if torch.device(device).type == "cuda":
        step_times = {}
        for bench in (False, True):
            torch.backends.cudnn.benchmark = bench
            step = _training_loop(cfg, copy.deepcopy(model), data[:2], "fp16")
            step()
            step_times[bench], _ = _timed(step, reps, device)
        print(
            f"  fp16 training step, batch 2, cuDNN benchmark off -> on: "
            f"{step_times[False]:.3f} -> {step_times[True]:.3f}  "
            f"x{step_times[False] / step_times[True]:.2f}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--skip-train", action="store_true", help="inference table only")
    parser.add_argument("--only", choices=["tiny", "swinL"], help="inference rows of one model")
    parser.add_argument("--tiny-weights", help="checkpoint of the quick-schedule model")
    parser.add_argument("--train-model", choices=["swinL", "tiny"], default="swinL")
    parser.add_argument("--train-size", type=int, default=800, help="training input size")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (development)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_bench: CUDA is not available on this machine; nothing to do.")
        return 0
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"torch {torch.__version__}, {name}")
    failed = inference_table(args.reps, args.device, args.only, args.tiny_weights)
    if not args.skip_train:
        config = SWIN if args.train_model == "swinL" else TINY
        training_table(args.train_steps, args.train_batch, args.device, args.train_size, config)
        device_paths_table(args.reps, args.device, args.train_size, args.train_batch, config)
    if failed:
        print(f"\n{failed} inference row(s) outside the parity tolerances (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
