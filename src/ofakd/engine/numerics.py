"""Non-finite losses and gradients: stop the run, or skip the step up to a limit.

Every step's summed loss and, without an fp16 GradScaler (which skips such steps itself), its global
gradient norm are checked. A NaN or inf then

* ``train.nonfinite: stop`` (the default): stops the run with :class:`NonFiniteError` (exit
  status 3), naming the epoch, the step, the loss component that went non-finite and the last
  good checkpoint. The check runs on numbers the loop reads from the device in batches
  (:mod:`.step_records`: at log steps, checkpoints and epoch ends), so training has no host sync
  per step; the run stops at the next read, and nothing from the bad step on is ever saved (a
  read comes before every checkpoint);
* ``train.nonfinite: skip``: drops that step with a warning, up to ``train.max_skipped_steps`` in
  the whole run, then stops as above. A dropped step leaves the model exactly as it was: no
  optimizer, EMA or method update, and the buffers its forward wrote (BatchNorm running statistics
  and ``num_batches_tracked``) put back (:class:`BufferSnapshot`); the batch is consumed and the
  schedule moves on. Deciding that needs the verdict on the host before the optimizer step: one
  host sync per step (an optimizer's host-side state, such as Adam's step count, cannot be held
  back on the device), and with several processes a one-number all-reduce, so that a non-finite
  loss on one of them makes every one skip the step.

The trainer also refuses to save weights that are not finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from ..errors import EXIT_NONFINITE, OfakdError
from .step_records import StepRecord

FIX = ("lower train.lr, set train.clip_grad, use train.amp none, or set train.nonfinite: skip "
       "(with train.max_skipped_steps) to drop such steps")


class NonFiniteError(OfakdError):
    """A non-finite loss, gradient or weight stopped the run."""

    exit_code = EXIT_NONFINITE


Losses = dict[str, "torch.Tensor | float"]
"""Loss components by name: tensors, or the floats every process agreed on."""


def _tensor(value) -> torch.Tensor:
    return value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))


def loss_parts(losses: Losses) -> str:
    """``gt=0.91, kd=nan`` (4 significant digits)."""
    return ", ".join(f"{name}={float(_tensor(value).sum()):.4g}" for name, value in losses.items())


def nonfinite_components(losses: Losses) -> list[str]:
    """Names of the loss components holding a NaN or an inf."""
    return [name for name, value in losses.items() if not bool(torch.isfinite(_tensor(value)).all())]


def grad_norm(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor | None:
    """Global L2 norm of the gradients, a device tensor (NaN/inf when any gradient is); None without gradients."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return None
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def step_is_finite(total: torch.Tensor, norm: torch.Tensor | None) -> torch.Tensor:
    """A device bool: the summed loss and the gradient norm (when measured) are finite."""
    finite = torch.isfinite(total.detach()).all()
    return finite & torch.isfinite(norm) if norm is not None else finite


class BufferSnapshot:
    """The buffers of a module (BatchNorm running statistics, ``num_batches_tracked``, ...) as they were at
    :meth:`save`; :meth:`restore` puts them back. Device copies only, into tensors allocated once: one more
    copy of every buffer in memory (for CRD, of its memory bank too)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.live = [b for b in module.buffers()]
        self.saved = [b.detach().clone() for b in self.live]

    def save(self) -> None:
        if self.live:
            torch._foreach_copy_(self.saved, self.live)

    def restore(self) -> None:
        if self.live:
            torch._foreach_copy_(self.live, self.saved)


@dataclass
class NonFiniteGuard:
    """The ``train.nonfinite`` policy for one run; :attr:`skipped` counts over the whole run (it is saved
    in ``last.pt``). The trainer keeps :attr:`last_good` naming its last good checkpoint."""

    policy: str = "stop"
    max_skipped: int = 0
    skipped: int = 0
    last_good: str = "none yet (no checkpoint was saved)"
    log: Callable[[str], None] = field(default=print, repr=False)

    def loss_ok(self, losses: Losses, total: float, *, epoch: int, step: int) -> bool:
        """True when ``total`` is finite; else skip (False) or raise per the policy. ``step`` counts from 1."""
        if math.isfinite(total):
            return True
        bad = nonfinite_components(losses)
        what = (f"loss component {bad[0]!r} is {_value(losses[bad[0]])}" if bad
                else f"the summed loss overflowed to {total}")
        return self._skip_or_stop(f"non-finite loss at epoch {epoch}, step {step}: {what} ({loss_parts(losses)})")

    def grads_ok(self, norm: float | None, losses: Losses, *, epoch: int, step: int) -> bool:
        """True when the gradient norm is finite (or was not measured); else skip (False) or raise."""
        if norm is None or math.isfinite(norm):
            return True
        return self._skip_or_stop(
            f"non-finite gradients at epoch {epoch}, step {step}: global norm {norm} from a finite loss "
            f"({loss_parts(losses)})"
        )

    @property
    def decides_each_step(self) -> bool:
        """``skip``: the loop needs each step's verdict before its optimizer step (a host sync per step)."""
        return self.policy == "skip"

    def check(self, record: StepRecord, *, epoch: int) -> bool:
        """True when the step of ``record`` was finite; else skip (False) or raise per the policy."""
        return (self.loss_ok(record.losses, record.total, epoch=epoch, step=record.step)
                and self.grads_ok(record.norm, record.losses, epoch=epoch, step=record.step))

    def _skip_or_stop(self, what: str) -> bool:
        if self.policy == "skip" and self.skipped < self.max_skipped:
            self.skipped += 1
            self.log(f"warning: {what}; step skipped ({self.skipped} of train.max_skipped_steps={self.max_skipped})")
            return False
        limit = (f"; {self.skipped} steps were skipped already, the limit train.max_skipped_steps={self.max_skipped}"
                 if self.policy == "skip" else "")
        raise NonFiniteError(
            f"{what}{limit}. The run stopped and nothing from that step on was saved; last good checkpoint: "
            f"{self.last_good}. Fix: {FIX if self.policy != 'skip' else 'lower train.lr or set train.clip_grad'}"
        )


def _value(value) -> str:
    t = _tensor(value)
    if bool(torch.isnan(t).any()):
        return "nan"
    return "inf" if bool(torch.isposinf(t).any()) else "-inf"
