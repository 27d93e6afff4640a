"""Progress on the console: a tqdm bar per epoch on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
from typing import TextIO


class EpochProgress:
    """Shows the steps of one epoch (loss, lr, images/s, ETA); silent when not on a terminal."""

    def __init__(self, epoch: int, epochs: int, steps: int, *, enabled: bool = True, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", file=self.stream,
                            dynamic_ncols=True, leave=False)

    def update(self, *, loss: float | None, lr: float, images_per_s: float) -> None:
        """One more step; ``loss`` is the latest read from the device (every train.log_every steps), None before."""
        if self.bar is not None:
            shown = f"loss {loss:.4f}  " if loss is not None else ""
            self.bar.set_postfix_str(f"{shown}lr {lr:.3g}  {images_per_s:.0f} img/s", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def epoch_line(epoch: int, epochs: int, *, loss: float, lr: float, images_per_s: float, seconds: float,
               evals: dict[str, float], best_top1: float) -> str:
    """``epoch 3/10  loss 0.8123  lr 0.0412  950 img/s  val top1 91.23 top5 99.10  (ema 90.10)  best 91.23  12.4s``."""
    text = f"epoch {epoch}/{epochs}  loss {loss:.4f}  lr {lr:.3g}  {images_per_s:.0f} img/s"
    text += f"  val top1 {evals['top1']:.2f} top5 {evals['top5']:.2f}"
    if "ema_top1" in evals:
        text += f"  (ema top1 {evals['ema_top1']:.2f})"
    return text + f"  best {best_top1:.2f}  {seconds:.1f}s"
