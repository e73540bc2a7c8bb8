"""Mixed-precision training on ``torch.amp``: fp16 with a GradScaler, or bf16 without one.

detectron2's AMPTrainer (at the pinned commit) uses the deprecated ``torch.cuda.amp`` APIs (a
FutureWarning every run), supports fp16 only and requires CUDA. This loop does the same step with
``torch.autocast(device_type, dtype)`` on the model's own device type, selected by
``SOLVER.AMP.PRECISION``.
"""

import time

import torch

from ..cli import ConfigError
from .loops import SeqRankSimpleTrainer

__all__ = ["PRECISIONS", "SeqRankAMPTrainer", "amp_dtype"]

PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16}


def amp_dtype(precision):
    """The autocast dtype of ``SOLVER.AMP.PRECISION`` (``fp16`` or ``bf16``)."""
    try:
        return PRECISIONS[str(precision).lower()]
    except KeyError:
        raise ConfigError(
            f"SOLVER.AMP.PRECISION must be one of {sorted(PRECISIONS)}, got {precision!r}"
        ) from None


def _model_device_type(model):
    return next(model.parameters()).device.type


class SeqRankAMPTrainer(SeqRankSimpleTrainer):
    """detectron2's AMP step (autocast forward, scaled backward, scaler step) on ``torch.amp``.

    fp16 scales the loss with ``torch.amp.GradScaler`` (its state is checkpointed as
    ``grad_scaler``, as detectron2's AMPTrainer does); bf16 has float32's range and needs no
    scaler. The optimizer's own ``step`` (e.g. full-model clipping) runs on unscaled gradients.
    Non-finite losses stop the run as in :class:`~seqrank.engine.loops.SeqRankSimpleTrainer`.
    """

    def __init__(self, model, data_loader, optimizer, precision="fp16", **kwargs):
        super().__init__(model, data_loader, optimizer, **kwargs)
        self.precision = amp_dtype(precision)
        self.device_type = _model_device_type(model)
        self.grad_scaler = None
        if self.precision == torch.float16:
            self.grad_scaler = torch.amp.GradScaler(self.device_type)

    def run_step(self):
        assert self.model.training, "[SeqRankAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with torch.autocast(self.device_type, dtype=self.precision):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                losses, loss_dict = loss_dict, {"total_loss": loss_dict}
            else:
                losses = sum(loss_dict.values())
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()

        if self.grad_scaler is None:
            losses.backward()
        else:
            self.grad_scaler.scale(losses).backward()
        self.after_backward()
        if self.async_write_metrics:
            self.concurrent_executor.submit(
                self._write_metrics, loss_dict, data_time, iter=self.iter
            )
        else:
            self._write_metrics(loss_dict, data_time)

        if self.grad_scaler is None:
            self.optimizer.step()
        else:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()

    def state_dict(self):
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        # A checkpoint of an fp32 or bf16 run has no scaler state: the scaler starts afresh.
        if self.grad_scaler is not None and state_dict.get("grad_scaler"):
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
