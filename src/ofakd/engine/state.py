"""Progress of a run that is not held in a module: epochs and steps done, best and last results, totals.

Plain numbers and strings only, so it round-trips through ``last.pt`` (``weights_only=True``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Best:
    top1: float = -1.0
    top5: float = 0.0
    epoch: int = 0
    source: str = "model"
    """Which weights gave it: "model" (the trained student) or "ema" (its EMA)."""


@dataclass
class RunState:
    epoch: int = 0
    """Epochs completed."""
    step: int = 0
    """Optimizer steps taken."""
    best: Best = field(default_factory=Best)
    final: dict = field(default_factory=dict)
    """The last epoch's evaluation (top1, top5, loss, and ema_* when EMA is on)."""
    teacher_eval: dict | None = None
    wall_time_s: float = 0.0
    train_seconds: float = 0.0
    train_images: int = 0

    def consider(self, epoch: int, evals: dict[str, float]) -> str | None:
        """Update the best result with this epoch's evaluation; returns "model"/"ema" when it improved."""
        candidates = [("model", evals["top1"], evals["top5"])]
        if "ema_top1" in evals:
            candidates.append(("ema", evals["ema_top1"], evals["ema_top5"]))
        source, top1, top5 = max(candidates, key=lambda c: c[1])  # ties: the model
        if top1 > self.best.top1:
            self.best = Best(top1=top1, top5=top5, epoch=epoch, source=source)
            return source
        return None

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunState:
        d = dict(d)
        d["best"] = Best(**d.get("best", {}))
        return cls(**d)
