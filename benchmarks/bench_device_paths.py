"""The training / inference paths reworked for GPUs, measured where a CPU can measure them.

1. Optimizer step: the original's one AdamW group per parameter against parameters merged by
   setting (``build_seqrank_optimizer(merge_groups=...)``), with torch's default implementation
   and with ``foreach`` (what CUDA uses by default), for the tiny quick-schedule model and Swin-L
   (``configs/swinL_correct.yaml``, random weights). Both must give bit-identical parameters.
2. Host reads per ranking step of the inference loop (each one is a device sync on CUDA): the
   original's loop (tests/reference/ranking.py) against the project's, counted with
   :class:`HostReadCounter` on the tiny model (random weights, batch 4).
3. Ranked masks: the previous path (all K masks upsampled at once, thresholded in place and
   copied as float32) against :func:`seqrank.modeling.postprocessing.threshold_masks` (chunks,
   copied as bool): seconds, bytes handed to the host and peak resident-set rise.

Pinned non-blocking copies, cuDNN autotuning and evaluation without the DDP wrapper only matter
on CUDA: ``benchmarks.gpu_bench`` covers them there.

Usage: ``python -m benchmarks.bench_device_paths [--skip-swin] [--reps 5] [--masks 20]``.
"""

import argparse
import contextlib
import copy
import functools
import statistics
import sys
import time
import warnings
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from torch.utils._python_dispatch import TorchDispatchMode

import seqrank  # noqa: F401  (registers the model)
from benchmarks.bench_inference import REPO, peak_rss
from seqrank.engine import build_cfg, build_seqrank_optimizer
from seqrank.modeling import meta_arch
from seqrank.modeling.postprocessing import empty_result, threshold_masks
from tests.reference import ranking as reference_ranking
from tests.reference.ranking import rank_reference

TINY = str(REPO / "configs" / "quick_schedules" / "synsor_tiny.yaml")
SWIN = str(REPO / "configs" / "swinL_correct.yaml")
# Python-level reads of tensor data: on CUDA tensors each one waits for the device.
READ_METHODS = ("tolist", "cpu", "numpy", "item", "__bool__", "__float__", "__int__")
# Operators whose output size or value depends on the data: they sync on CUDA too.
SYNC_OPS = ("aten.nonzero", "aten.masked_select", "aten.unique", "aten._local_scalar_dense")


class _SyncOps(TorchDispatchMode):
    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(SYNC_OPS) and not self.counter.inside:
            self.counter.count += 1
        return func(*args, **(kwargs or {}))


class HostReadCounter(contextlib.AbstractContextManager):
    """Counts the reads of tensor data by the host (device syncs on CUDA) inside the block.

    Python-level reads (``tolist``, ``cpu``, ``item``, ``bool(t)``, ...) are counted once each,
    data-dependent operators (``nonzero``, ...) once per call; the operators a counted read runs
    internally, and reads of a tensor returned by a counted ``cpu()``, are not counted again.
    Works on CPU, where these calls do not sync, so a loop's syncs can be counted without a GPU.
    """

    def __init__(self):
        self.count = 0
        self.inside = False
        self._saved = {}
        self._mode = None

    def _wrap(self, name, method):
        def counted(tensor, *args, **kwargs):
            if self.inside or getattr(tensor, "_host_copy", False):
                return method(tensor, *args, **kwargs)
            self.count += 1
            self.inside = True
            try:
                out = method(tensor, *args, **kwargs)
            finally:
                self.inside = False
            if name == "cpu":
                # Reading a host copy again is free (on CPU ``cpu()`` returns the tensor itself).
                out._host_copy = True
            return out

        counted.__name__ = name
        return counted

    def __enter__(self):
        for name in READ_METHODS:
            self._saved[name] = getattr(torch.Tensor, name)
            setattr(torch.Tensor, name, self._wrap(name, self._saved[name]))
        self._mode = _SyncOps(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        for name, method in self._saved.items():
            setattr(torch.Tensor, name, method)
        return False


class CudaSyncCounter(contextlib.AbstractContextManager):
    """Counts the synchronizing CUDA operations inside the block (CUDA's sync debug mode)."""

    def __init__(self):
        self.count = 0
        self._caught = None

    def __enter__(self):
        torch.cuda.synchronize()
        self._catcher = warnings.catch_warnings(record=True)
        self._caught = self._catcher.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        torch.cuda.set_sync_debug_mode("default")
        self._catcher.__exit__(*exc)
        self.count = sum("synchroniz" in str(w.message) for w in self._caught)
        return False


# ---------------------------------------------------------------------------- 1. optimizer


def _timed_steps(cfg, model, merge, foreach, reps):
    model = copy.deepcopy(model)
    opt = build_seqrank_optimizer(cfg, model, merge_groups=merge)
    for group in opt.param_groups:
        group["foreach"] = foreach
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    opt.step()  # creates the moment buffers
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    groups = len(opt.param_groups)
    del opt  # the moment buffers: Swin-L's are 1.7 GB
    model.zero_grad(set_to_none=True)
    return statistics.median(times), model, groups


def optimizer_table(reps, skip_swin):
    print("\n1. optimizer step (AdamW, full-model clipping), median of", reps, "steps")
    print("model    impl      groups before -> after   s/step before   s/step after   ratio")
    configs = [("tiny", TINY)] + ([] if skip_swin else [("swinL", SWIN)])
    for name, path in configs:
        cfg = build_cfg(path, ["MODEL.DEVICE", "cpu", "SOLVER.BACKBONE_MULTIPLIER", "0.1"])
        torch.manual_seed(0)
        model = build_model(cfg).train()
        for impl, foreach in (("default", None), ("foreach", True)):
            old, old_model, n_old = _timed_steps(cfg, model, False, foreach, reps)
            new, new_model, n_new = _timed_steps(cfg, model, True, foreach, reps)
            same = all(
                torch.equal(a, b) for a, b in zip(old_model.parameters(), new_model.parameters())
            )
            assert same, f"{name} {impl}: merged groups changed the update"
            print(
                f"{name:<8} {impl:<8} {n_old:6d} -> {n_new:<6d}    {old:12.4f}   {new:12.4f}"
                f"   x{old / new:5.2f}  (parameters bit-identical)"
            )
        del model


# ---------------------------------------------------------------------------- 2. host reads


def host_reads_table():
    cfg = build_cfg(TINY, ["MODEL.DEVICE", "cpu", "INPUT.FT_SIZE_TEST", "128"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    images = [
        {"image": torch.rand(3, 128, 128, generator=gen) * 255, "height": 96, "width": 120}
        for _ in range(4)
    ]
    print("\n2. host reads (device syncs on CUDA) per ranking step, tiny model, batch 4")
    for label, fast in (("original loop", False), ("project loop", True)):
        model.set_fast_inference(fast)
        reads, steps = count_ranking_reads(model, images, reference=not fast)
        print(f"  {label:<14} {reads:4d} reads in {steps:3d} steps: {reads / steps:.2f} per step")
    model.set_fast_inference(True)


def count_ranking_reads(model, images, counter=None, reference=False):
    """(host reads, ranking steps) of one ranking call, mask/box outputs left out.

    ``reference``: run the original's loop (tests/reference/ranking.py) instead of
    ``model.rank``. ``counter``: a context manager with a ``count`` (default
    :class:`HostReadCounter`; on a GPU :class:`CudaSyncCounter` counts the real syncs).
    """
    counter = HostReadCounter() if counter is None else counter
    with torch.inference_mode():
        features = model.encode(images)[:-1]
    steps = [0]
    step_logits = model.step_logits

    def counted_step(*args, **kwargs):
        steps[0] += 1
        return step_logits(*args, **kwargs)

    loop = functools.partial(rank_reference, model) if reference else model.rank
    no_result = lambda inputs, index, *rest: empty_result(inputs, index)  # noqa: E731
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(model, "step_logits", counted_step))
        stack.enter_context(mock.patch.object(meta_arch, "image_result", no_result))
        stack.enter_context(mock.patch.object(reference_ranking, "append", lambda *a: None))
        with torch.inference_mode(), counter:
            loop(images, *features)
    assert model.step_logits == step_logits
    return counter.count, steps[0]


# ---------------------------------------------------------------------------- 3. ranked masks


def _float_masks(logits, height, width):
    """The previous path: all masks upsampled at once, thresholded in place, float32 copy."""
    masks = F.interpolate(logits.float()[None], size=(height, width), mode="bilinear")
    return masks[0].sigmoid_().gt_(0.5).cpu().numpy()


def masks_table(count, height, width, reps):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(count, 200, 200, generator=gen) * 4
    print(f"\n3. {count} ranked masks upsampled to {height} x {width}, median of {reps}")
    results = {}
    for label, fn in (("float32 (before)", _float_masks), ("bool (project)", None)):
        times, peaks = [], []
        for _ in range(reps):
            with peak_rss(peaks):
                start = time.perf_counter()
                out = fn(logits, height, width) if fn else threshold_masks(logits, height, width)
                out = out if isinstance(out, np.ndarray) else out.numpy()
                times.append(time.perf_counter() - start)
            results[label] = out
            del out
        mib = results[label].nbytes / 2**20
        print(
            f"  {label:<17} {statistics.median(times):7.3f} s   host copy {mib:8.1f} MiB"
            f"   peak RSS +{max(peaks):8.1f} MiB"
        )
    before, after = results.values()
    assert np.array_equal(before.astype(bool), after), "thresholded masks differ"
    print("  masks identical")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--skip-swin", action="store_true", help="tiny model only")
    parser.add_argument("--masks", type=int, default=20, help="ranked masks in part 3")
    parser.add_argument("--mask-size", type=int, nargs=2, default=(2000, 3000), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), CPU")
    optimizer_table(args.reps, args.skip_swin)
    host_reads_table()
    masks_table(args.masks, *args.mask_size, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
