"""Per-rank devices, mixed precision on torch.amp (fp16 / bf16) and the device-side helpers."""

import warnings

import pytest
import torch
from detectron2.modeling import build_model

import seqrank  # noqa: F401
from seqrank.engine import SeqRankAMPTrainer, amp_dtype, build_cfg, fit_to_machine, resolve_device
from seqrank.engine.optimizer import build_seqrank_optimizer
from seqrank.modeling import postprocessing
from seqrank.utils.device import to_device
from tests.conftest import REPO

TINY = str(REPO / "configs" / "quick_schedules" / "synsor_tiny.yaml")


@pytest.mark.parametrize(
    "device, world, local_rank, count, expected",
    [
        ("cpu", 2, 1, 4, "cpu"),
        ("cuda", 1, 0, 2, "cuda"),
        ("cuda:1", 1, 0, 2, "cuda:1"),
        ("cuda", 2, 1, 2, "cuda:1"),
        ("cuda:0", 4, 3, 4, "cuda:3"),
        ("cuda:3", 2, 1, 2, "cuda:1"),  # every rank its own GPU, whatever index was given
        ("cuda", 1, 0, 0, "cpu"),
        ("cuda:1", 2, 1, 0, "cpu"),
    ],
)
def test_each_process_gets_the_gpu_of_its_local_rank(device, world, local_rank, count, expected):
    assert resolve_device(device, world, local_rank, count)[0] == expected


def test_device_errors_are_one_line():
    with pytest.raises(ValueError, match=r"MODEL.DEVICE cuda:2 needs cuda:2.*2 CUDA device\(s\)"):
        resolve_device("cuda:2", 1, 0, 2)
    with pytest.raises(ValueError, match=r"local rank 2 needs cuda:2"):
        resolve_device("cuda", 4, 2, 2)
    with pytest.raises(ValueError, match="is not a torch device"):
        resolve_device("gpu0", 1, 0, 2)


def test_amp_precision_rules_on_cpu():
    cfg = build_cfg(TINY, ["MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", "True"])
    notes = fit_to_machine(cfg, world_size=1)
    assert not cfg.SOLVER.AMP.ENABLED and "switched off" in notes[0]
    cfg = build_cfg(TINY, ["SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", "bf16"])
    fit_to_machine(cfg, world_size=1)
    assert cfg.SOLVER.AMP.ENABLED and amp_dtype(cfg.SOLVER.AMP.PRECISION) == torch.bfloat16
    bad = build_cfg(TINY, ["SOLVER.AMP.PRECISION", "fp8"])
    with pytest.raises(ValueError, match=r"SOLVER.AMP.PRECISION must be one of \['bf16', 'fp16'\]"):
        fit_to_machine(bad, world_size=1)


def _synthetic_batch(count=2, size=64):
    gen = torch.Generator().manual_seed(0)
    batch = []
    for i in range(count):
        masks = torch.zeros(2, size, size)
        masks[0, 5:40, 8:30] = 1
        masks[1, 30:60, 35:60] = 1
        image = torch.rand(3, size, size, generator=gen) * 255
        batch.append({"image": image, "masks": masks, "ranks": [2, 1], "image_name": str(i)})
    return batch


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_amp_trainer_steps_on_torch_amp_without_deprecation(precision):
    from detectron2.utils.events import EventStorage

    cfg = build_cfg(TINY, ["MODEL.DEVICE", "cpu", "INPUT.FT_SIZE_TRAIN", "64"])
    torch.manual_seed(0)
    model = build_model(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = build_seqrank_optimizer(cfg, model)
    batch = _synthetic_batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        trainer = SeqRankAMPTrainer(model, [batch] * 3, optimizer, precision=precision)
        if trainer.grad_scaler is not None:
            # The default scale (2**16) skips the first steps until it has backed off.
            trainer.grad_scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
        with EventStorage(0) as storage:
            for it in range(2):
                storage.iter = trainer.iter = it
                trainer.run_step()
    assert (trainer.grad_scaler is not None) == (precision == "fp16")
    state = trainer.state_dict()
    assert ("grad_scaler" in state) == (precision == "fp16")
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert storage.history("total_loss").latest() > 0
    trainer.load_state_dict({**state, "grad_scaler": None})  # an fp32 / bf16 checkpoint


def test_threshold_masks_in_chunks_equals_one_call(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 12, 16, generator=gen) * 3
    whole = postprocessing.threshold_masks(logits, 37, 41)
    monkeypatch.setattr(postprocessing, "MASK_CHUNK_VALUES", 2 * 37 * 41)
    chunked = postprocessing.threshold_masks(logits, 37, 41)
    upsampled = torch.nn.functional.interpolate(logits[None], size=(37, 41), mode="bilinear")[0]
    assert whole.dtype == torch.bool and torch.equal(whole, chunked)
    assert torch.equal(whole, upsampled.sigmoid() > 0.5)


def test_to_device_keeps_host_tensors_on_cpu():
    tensors = [torch.ones(2, 3), torch.zeros(0, 3)]
    moved = to_device(tensors, "cpu")
    assert all(a is b for a, b in zip(tensors, moved))


def test_cudnn_benchmark_on_by_default_and_tf32_opt_in():
    from seqrank.engine.setup import configure_backends

    cfg = build_cfg(TINY, ["MODEL.DEVICE", "cpu", "TF32", "True"])
    assert cfg.CUDNN_BENCHMARK and not build_cfg(TINY).TF32
    saved = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    try:
        torch.backends.cudnn.benchmark = False
        configure_backends(cfg)
        assert torch.backends.cudnn.benchmark
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.backends.cudnn.benchmark = saved[0]
        torch.set_float32_matmul_precision(saved[1])


def test_periodic_evaluation_gets_the_model_inside_ddp(monkeypatch):
    from types import SimpleNamespace

    from torch.nn.parallel import DistributedDataParallel

    from seqrank.engine import Trainer, unwrap

    inner = torch.nn.Linear(2, 2)
    wrapped = DistributedDataParallel.__new__(DistributedDataParallel)
    torch.nn.Module.__init__(wrapped)
    wrapped.module = inner  # a DDP shell: no process group needed to unwrap it
    assert unwrap(wrapped) is inner and unwrap(inner) is inner
    seen = []
    monkeypatch.setattr(Trainer, "test", classmethod(lambda cls, cfg, model: seen.append(model)))
    trainer = Trainer.__new__(Trainer)
    trainer._trainer, trainer.cfg = SimpleNamespace(model=wrapped), None
    trainer._evaluate_unwrapped()
    assert seen == [inner]
