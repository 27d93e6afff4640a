"""Non-finite losses and gradients: stop the run, or skip the step up to a limit.

Every step the summed loss is checked before ``backward`` and, without an fp16 GradScaler (which
skips such steps itself), the global gradient norm before the optimizer step. A NaN or inf then

* ``train.nonfinite: stop`` (the default): stops the run with :class:`NonFiniteError` (exit
  status 3), naming the epoch, the step, the loss component that went non-finite and the last
  good checkpoint; the bad step never reaches the weights and nothing is saved after it;
* ``train.nonfinite: skip``: drops that step (no optimizer, EMA or method update; the batch is
  consumed and the schedule moves on) with a warning, up to ``train.max_skipped_steps`` in the
  whole run, then stops as above.

The trainer also refuses to save weights that are not finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from ..errors import EXIT_NONFINITE, OfakdError

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


def grad_norm(parameters: Iterable[torch.nn.Parameter]) -> float:
    """Global L2 norm of the gradients (NaN/inf when any gradient is)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norms = torch._foreach_norm(grads)
    return float(torch.linalg.vector_norm(torch.stack([n.float() for n in norms])))


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an inf."""
    return [name for name, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]


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

    def _skip_or_stop(self, what: str) -> bool:
        if self.policy == "skip" and self.skipped < self.max_skipped:
            self.skipped += 1
            self.log(f"warning: {what}; step skipped ({self.skipped} of train.max_skipped_steps={self.max_skipped})")
            return False
        limit = (f"; {self.skipped} steps were skipped already, the limit train.max_skipped_steps={self.max_skipped}"
                 if self.policy == "skip" else "")
        raise NonFiniteError(
            f"{what}{limit}. The run stopped before the step reached the weights; last good checkpoint: "
            f"{self.last_good}. Fix: {FIX if self.policy != 'skip' else 'lower train.lr or set train.clip_grad'}"
        )


def _value(value) -> str:
    t = _tensor(value)
    if bool(torch.isnan(t).any()):
        return "nan"
    return "inf" if bool(torch.isposinf(t).any()) else "-inf"
