"""Where the inference time goes: a per-stage table in fp32 and bf16 (time, share, GFLOP/s).

Stages of ``SeqRank.forward`` (eval mode, batch 1), timed by hooks on the real modules (nothing
is re-implemented here): normalisation, backbone, neck, position encodings, foveal head, ranking
(the token cache, each ranking step, their total including the loop's bookkeeping) and mask
upsampling + post-processing (``image_result``). FLOPs come from one extra run of each precision
under ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention: upsampling,
norms and elementwise work count as 0, so their GFLOP/s show as ``-``); GFLOP/s = the stage's
FLOPs / its median time.

``--compile N`` also measures ``torch.compile`` (default inductor backend) of the backbone and of
the ranking module (``--compile-variants``) over N images against eager, each from a fresh model
and a cold inductor cache, compile time included, and reports the time of a 20-image run
(measured, or first image + 19 x the median of the others when N < 20); ``--no-table`` skips the
stage tables.

Usage: ``python -m benchmarks.profile_inference --model {tiny,swinL} --size 800 [--images 1]
[--threads 2] [--precisions fp32 bf16] [--compile 20 [--no-table]]``. Models and inputs as in
``benchmarks.bench_precision``.
"""

import argparse
import collections
import contextlib
import os
import statistics
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_precision import CONFIGS, REPO, load_inputs, load_model, runnable
from seqrank.modeling import meta_arch

MODULE_STAGES = (
    ("backbone", "backbone"),
    ("neck", "neck"),
    ("position encodings", "pe_layer"),
    ("foveal head", "instance_seg"),
    ("ranking step", "gaze_shift"),
)
ROWS = (
    "normalisation",
    "backbone",
    "neck",
    "position encodings",
    "foveal head",
    "ranking: token cache",
    "ranking: per step",
    "ranking: total",
    "masks + post-processing",
    "total",
)


class StageClock:
    """Seconds and FLOPs spent per stage of one or more forwards (see the module docstring)."""

    def __init__(self, model, flops=None):
        self.model = model
        self.flops = flops  # a FlopCounterMode whose running total is read at each boundary
        self.seconds = collections.defaultdict(float)
        self.counted = collections.defaultdict(float)
        self.calls = collections.Counter()
        self._open = {}

    def _now(self):
        if self.model.device.type == "cuda":
            torch.cuda.synchronize()
        total = self.flops.get_total_flops() if self.flops is not None else 0
        return time.perf_counter(), total

    def start(self, stage):
        self._open[stage] = self._now()

    def stop(self, stage):
        start, flops = self._open.pop(stage)
        end, total = self._now()
        self.seconds[stage] += end - start
        self.counted[stage] += total - flops
        self.calls[stage] += 1

    def wrap(self, stage, fn):
        def timed(*args, **kwargs):
            self.start(stage)
            try:
                return fn(*args, **kwargs)
            finally:
                self.stop(stage)

        return timed

    @contextlib.contextmanager
    def installed(self):
        """Hooks on the model's stage modules and wrappers of encode / rank / token cache /
        image_result, removed on exit."""
        model, handles = self.model, []
        for stage, name in MODULE_STAGES:
            module = getattr(model, name)
            handles.append(module.register_forward_pre_hook(lambda m, a, s=stage: self.start(s)))
            handles.append(module.register_forward_hook(lambda m, a, o, s=stage: self.stop(s)))
        patched = {
            (model, "encode"): self.wrap("encode", model.encode),
            (model, "rank"): self.wrap("rank", model.rank),
            (model.gaze_shift, "token_cache"): self.wrap(
                "token cache", model.gaze_shift.token_cache
            ),
            (meta_arch, "image_result"): self.wrap("post", meta_arch.image_result),
        }
        saved = {key: getattr(*key) for key in patched if key[0] is meta_arch}
        try:
            for (owner, attr), fn in patched.items():
                setattr(owner, attr, fn)
            yield self
        finally:
            for handle in handles:
                handle.remove()
            for owner, attr in [k for k in patched if k[0] is not meta_arch]:
                delattr(owner, attr)  # back to the class's method
            for (owner, attr), fn in saved.items():
                setattr(owner, attr, fn)


def table_rows(clock, images):
    """``{row: (ms per image, GFLOP per image)}``; the per-step row is per ranking step."""
    s, f = clock.seconds, clock.counted
    inner = ("backbone", "neck", "position encodings", "foveal head")
    ranking = s["rank"] - s["post"]
    rows = {
        "normalisation": (s["encode"] - sum(s[k] for k in inner), 0.0),
        **{k: (s[k], f[k]) for k in inner},
        "ranking: token cache": (s["token cache"], f["token cache"]),
        "ranking: total": (ranking, f["rank"] - f["post"]),
        "masks + post-processing": (s["post"], f["post"]),
        "total": (s["encode"] + s["rank"], f["encode"] + f["rank"]),
    }
    steps = max(1, clock.calls["ranking step"])
    per_image = {k: (sec * 1e3 / images, fl / 1e9 / images) for k, (sec, fl) in rows.items()}
    per_image["ranking: per step"] = (
        s["ranking step"] * 1e3 / steps,
        f["ranking step"] / 1e9 / steps,
    )
    return per_image, clock.calls["ranking step"] / images


def profile(model, inputs, precision, reps):
    """Per-stage medians over ``reps`` timed passes over ``inputs`` (after one warm-up), and the
    FLOPs of one counted pass."""
    model.set_precision(precision)
    with torch.inference_mode():
        _progress(f"{precision}: warm-up")
        model(inputs[:1])
        _progress(f"{precision}: counting FLOPs")
        counter = FlopCounterMode(display=False)
        flop_clock = StageClock(model, counter)
        # The counter's module tracker hooks the gradients of inputs that require them, which
        # fails on the inference-mode views of parameters: count with gradients off.
        flags = [p.requires_grad for p in model.parameters()]
        model.requires_grad_(False)
        try:
            with counter, flop_clock.installed():
                for x in inputs:
                    model([x])
        finally:
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)
        passes = []
        for rep in range(reps):
            _progress(f"{precision}: timed pass {rep + 1} of {reps}")
            clock = StageClock(model)
            with clock.installed():
                for x in inputs:
                    model([x])
            passes.append(table_rows(clock, len(inputs)))
    model.set_precision("fp32")
    flops, _ = table_rows(flop_clock, len(inputs))
    ms = {row: statistics.median(p[0][row][0] for p in passes) for row in ROWS}
    steps = passes[0][1]
    return {row: (ms[row], flops[row][1]) for row in ROWS}, steps


def _progress(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def print_table(label, rows, steps):
    total = rows["total"][0]
    print(f"\n{label} (ms per image; ranking steps per image: {steps:.0f})")
    print(f"{'stage':<26} {'ms':>10} {'%':>6} {'GFLOP':>9} {'GFLOP/s':>9}")
    for row in ROWS:
        ms, gflop = rows[row]
        share = "" if row == "ranking: per step" else f"{100 * ms / total:6.1f}"
        rate = f"{gflop / (ms / 1e3):9.1f}" if gflop > 0 and ms > 0 else f"{'-':>9}"
        print(f"{row:<26} {ms:10.1f} {share:>6} {gflop:9.2f} {rate}")


# ---------------------------------------------------------------------------- torch.compile

COMPILE_VARIANTS = {
    "backbone": ("backbone",),
    "ranking": ("ranking",),
    "both": ("backbone", "ranking"),
}


def _compiled(model, parts):
    if "backbone" in parts:
        model.backbone.forward = torch.compile(model.backbone.forward)
    if "ranking" in parts:
        model.gaze_shift.forward = torch.compile(model.gaze_shift.forward)
    return model


def _time_images(args, parts, precision, inputs):
    model = _compiled(load_model(args.model, args.size, args.device), parts)
    model.set_precision(precision)
    seconds = []
    with torch.inference_mode():
        for x in inputs:
            start = time.perf_counter()
            model([x])
            seconds.append(time.perf_counter() - start)
    return seconds


def compile_check(args, inputs, run_length=20):
    """Eager vs ``torch.compile`` (fresh model each, compile time included) over ``inputs``, in
    each precision asked for. Prints the first image (compilation happens there), the median of
    the others and the time of ``run_length`` images: measured when ``len(inputs)`` is that
    long, else first + (run_length - 1) x median; the gain is on that time."""
    chosen = getattr(args, "compile_variants", None) or list(COMPILE_VARIANTS)
    variants = [("eager", ())] + [(f"compile {v}", COMPILE_VARIANTS[v]) for v in chosen]
    print(f"\ntorch.compile, {len(inputs)} images per variant (s; {run_length}-image run: ", end="")
    print("measured" if len(inputs) >= run_length else "first + (n - 1) x median", end=")\n")
    print(f"{'precision':<9} {'variant':<18} {'first':>8} {'median':>8} {'run':>9} {'gain':>8}")
    for precision in args.precisions:
        base = None
        for name, parts in variants:
            _progress(f"compile check: {precision}, {name}")
            torch._dynamo.reset()
            # A cold on-disk cache for each variant: what compiling costs the first time.
            with tempfile.TemporaryDirectory(prefix="seqrank_inductor_") as cache:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
                seconds = _time_images(args, parts, precision, inputs)
            rest = statistics.median(seconds[1:]) if len(seconds) > 1 else float("nan")
            if len(seconds) >= run_length:
                run = sum(seconds[:run_length])
            else:
                run = seconds[0] + (run_length - 1) * rest
            base = run if base is None else base
            print(
                f"{precision:<9} {name:<18} {seconds[0]:8.2f} {rest:8.2f} {run:9.1f} "
                f"{100 * (base / run - 1):+7.1f}%"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(CONFIGS), default="swinL")
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--images", type=int, default=1, help="images per timed pass")
    parser.add_argument("--reps", type=int, default=1, help="timed passes (median per stage)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--inputs", default=str(REPO / "demo" / "examples"))
    parser.add_argument("--compile", type=int, default=0, metavar="N", help="compile check")
    parser.add_argument(
        "--compile-variants",
        nargs="+",
        choices=sorted(COMPILE_VARIANTS),
        help="what --compile compiles, each against eager (default: all three)",
    )
    parser.add_argument("--no-table", action="store_true", help="skip the stage tables")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    kept, notes = runnable([p for p in args.precisions if p != "fp32"], args.device)
    args.precisions = [p for p in kept if p in args.precisions]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.device}; "
        f"{args.model} @{args.size}, load average {os.getloadavg()[0]:.2f}"
    )
    for note in notes:
        print(f"skipped: {note}")
    if not args.no_table:
        model = load_model(args.model, args.size, args.device)
        inputs = load_inputs(args.inputs, args.images, args.size)
        for precision in args.precisions:
            rows, steps = profile(model, inputs, precision, args.reps)
            print_table(f"{args.model} @{args.size}, {precision}", rows, steps)
        del model
    if args.compile:
        compile_check(args, load_inputs(args.inputs, args.compile, args.size))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
