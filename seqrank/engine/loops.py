"""Training loops: detectron2's SimpleTrainer with a non-finite-loss check on every iteration."""

import math

from detectron2.engine import SimpleTrainer

__all__ = ["SeqRankSimpleTrainer", "check_losses_finite"]


def check_losses_finite(loss_dict, iteration):
    """Raise ``FloatingPointError`` (one line naming ``iteration`` and every loss term that is NaN
    or infinite) unless all of ``loss_dict``'s scalar losses are finite."""
    values = {name: float(loss.detach().float().sum()) for name, loss in loss_dict.items()}
    bad = [f"{name}={value}" for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise FloatingPointError(
            f"the loss is not finite at iteration {iteration}: {', '.join(bad)} "
            "(the run diverged; lower SOLVER.BASE_LR or enable SOLVER.CLIP_GRADIENTS)"
        )


class SeqRankSimpleTrainer(SimpleTrainer):
    """Stops at the first iteration with a non-finite loss term, before the optimizer steps.

    detectron2 checks only the total, on the main process, every ``gather_metric_period``
    iterations, in a multi-line error without the terms' names. ``run_step`` writes the metrics
    before ``optimizer.step``, so the check runs on every process before any update."""

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        check_losses_finite(loss_dict, self.iter if iter is None else iter)
        super()._write_metrics(loss_dict, data_time, prefix=prefix, iter=iter)
