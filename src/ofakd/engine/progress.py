"""Progress on the console: a tqdm bar per epoch on a terminal, plain log lines otherwise.

On a terminal the bar counts steps and shows, at every train record (``train.log_every`` steps), the loss,
its main terms (per-stage terms summed: ``ofa`` for ``ofa_s1..ofa_s4``), lr and images/s. Off a terminal
(SLURM, ``| tee``, a log file) nothing draws a bar: each train record is one line with the step, every
loss term, lr, images/s and the ETA of the epoch and of the run's training. Only values the loop already
fetched for the record are shown: progress adds no device sync.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import TextIO


class EpochProgress:
    """One epoch's progress: ``step()`` after every step, ``record(r)`` with each train record."""

    def __init__(self, epoch: int, epochs: int, steps: int, *, start_step: int = 0, done: int = 0,
                 enabled: bool = True, stream: TextIO | None = None, log: Callable[[str], None] = print):
        """``start_step``: optimizer steps before this epoch; ``done``: steps of it trained before a resume."""
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.start_step, self.done = start_step, done
        self.enabled, self.log = enabled, log
        self.started = time.perf_counter()
        self.stream = stream or sys.stdout
        self.bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=steps, initial=done, desc=f"epoch {epoch}/{epochs}", unit="step", file=self.stream,
                            dynamic_ncols=True, leave=False)

    def step(self, *_values) -> None:
        """One more step (the bar only)."""
        if self.bar is not None:
            self.bar.update(1)

    def record(self, record: dict) -> None:
        """A train record (``step``, ``loss``, ``losses``, ``lr``, ``images_per_s``): the bar's text on a
        terminal, else one log line."""
        if not self.enabled:
            return
        if self.bar is not None:
            terms = "  ".join(f"{k} {v:.3g}" for k, v in main_terms(record["losses"]).items())
            self.bar.set_postfix_str(f"loss {record['loss']:.4f} ({terms})  lr {record['lr']:.3g}  "
                                     f"{record['images_per_s']:.0f} img/s", refresh=False)
            return
        self.log(self.line(record))

    def line(self, record: dict) -> str:
        """``epoch 2/12 step 30/45  loss 1.2346 (gt 0.8123 kd 0.2 ofa_s1 0.05 ...)  lr 0.00187  950 img/s
        eta 00:07 (training 02:41)``."""
        at = record["step"] - self.start_step
        terms = " ".join(f"{k} {v:.4g}" for k, v in record["losses"].items())
        text = (f"epoch {self.epoch}/{self.epochs} step {at}/{self.steps}  loss {record['loss']:.4f} ({terms})  "
                f"lr {record['lr']:.3g}  {record['images_per_s']:.0f} img/s")
        seconds = time.perf_counter() - self.started
        if at > self.done and seconds > 0:
            from tqdm import tqdm

            per_step = seconds / (at - self.done)
            left = self.steps - at
            run_left = left + (self.epochs - self.epoch) * self.steps
            text += f"  eta {tqdm.format_interval(left * per_step)} (training {tqdm.format_interval(run_left * per_step)})"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main_terms(losses: dict[str, float]) -> dict[str, float]:
    """Loss terms with per-stage ones summed: ``{gt, kd, ofa_s1, ofa_s2}`` -> ``{gt, kd, ofa}``."""
    out: dict[str, float] = {}
    for name, value in losses.items():
        key = re.sub(r"_s\d+$", "", name)
        out[key] = out.get(key, 0.0) + value
    return out


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def epoch_line(epoch: int, epochs: int, *, loss: float, lr: float, images_per_s: float, seconds: float,
               evals: dict[str, float], best_top1: float, terms: dict[str, float] | None = None) -> str:
    """``epoch 3/10  loss 0.8123 (gt 0.61 kd 0.2)  lr 0.0412  950 img/s  val top1 91.23 top5 99.10  (ema top1 90.10)
    best 91.23  12.4s``; ``terms``: the epoch's mean of each loss term."""
    parts = f" ({' '.join(f'{k} {v:.4g}' for k, v in terms.items())})" if terms else ""
    text = f"epoch {epoch}/{epochs}  loss {loss:.4f}{parts}  lr {lr:.3g}  {images_per_s:.0f} img/s"
    text += f"  val top1 {evals['top1']:.2f} top5 {evals['top5']:.2f}"
    if "ema_top1" in evals:
        text += f"  (ema top1 {evals['ema_top1']:.2f})"
    return text + f"  best {best_top1:.2f}  {seconds:.1f}s"
