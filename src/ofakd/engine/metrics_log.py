"""``metrics.jsonl`` (one JSON object per line) and TensorBoard events, side by side.

Records::

    {"kind": "train", "epoch": 1, "step": 50, "lr": 0.05, "loss": 1.23, "images_per_s": 812.0,
     "losses": {"gt": 0.9, "kd": 0.33}}
    {"kind": "eval", "epoch": 1, "top1": 71.2, "top5": 90.1, "loss": 1.05}   (+ "ema_top1", ...)

Epochs count from 1; ``step`` is the number of optimizer steps so far.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import finite_json
from ..run_folder import read_metrics, write_text
from ..run_folder.no_links import open_to_append


class MetricsLog:
    """Append records to ``metrics.jsonl`` (flushed per line) and mirror scalars to TensorBoard."""

    def __init__(self, path: str | Path, *, tensorboard_dir: str | Path | None = None, purge_step: int | None = None):
        self.path = Path(path)
        self._file = open_to_append(self.path)  # kept open for the run
        self._writer = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(tensorboard_dir), purge_step=purge_step)

    def train(self, *, epoch: int, step: int, lr: float, loss: float, images_per_s: float, losses: dict[str, float]) -> None:
        record = {"kind": "train", "epoch": epoch, "step": step, "lr": lr, "loss": loss,
                  "images_per_s": images_per_s, "losses": losses}
        self._append(record)
        if self._writer is not None:
            self._writer.add_scalar("train/loss", loss, step)
            self._writer.add_scalar("train/lr", lr, step)
            self._writer.add_scalar("train/images_per_s", images_per_s, step)
            for name, value in losses.items():
                self._writer.add_scalar(f"train_losses/{name}", value, step)

    def eval(self, *, epoch: int, step: int, results: dict[str, float]) -> None:
        """``results``: top1, top5, loss (and ema_top1, ema_top5, ema_loss)."""
        self._append({"kind": "eval", "epoch": epoch, **results})
        if self._writer is not None:
            for key, value in results.items():
                tag = f"val_ema/{key[4:]}" if key.startswith("ema_") else f"val/{key}"
                self._writer.add_scalar(tag, value, step)
            self._writer.add_scalar("epoch", epoch, step)
            self._writer.flush()

    def _append(self, record: dict) -> None:
        self._file.write(finite_json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def truncate_after(path: str | Path, epochs_done: int, steps_done: int | None = None) -> None:
    """Keep only the records of the first ``epochs_done`` epochs (resume re-logs the rest) and, with
    ``steps_done`` (a checkpoint inside an epoch), the train records of the next epoch up to that step."""
    path = Path(path)

    def kept_record(r: dict) -> bool:
        if not isinstance(r.get("epoch"), int):
            return False
        if r["epoch"] <= epochs_done:
            return True
        return (steps_done is not None and r["epoch"] == epochs_done + 1 and r.get("kind") == "train"
                and isinstance(r.get("step"), int) and r["step"] <= steps_done)

    kept = [r for r in read_metrics(path) if kept_record(r)]
    write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
