"""What a trained student is: its timm recipe, its preprocessing and where its weights came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.config import INTERPOLATIONS, AugmentConfig, DataConfig


@dataclass(frozen=True)
class Preprocess:
    """How images are fed to the student at evaluation (timm's data-config vocabulary).

    ``crop_mode`` "squash" with ``crop_pct`` 1.0 is a plain resize to H x W (what ofakd does when
    ``augment.crop_pct`` is null); "center" resizes the short side to size / crop_pct, then crops.
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    crop_pct: float = 1.0
    crop_mode: str = "squash"

    def to_timm(self) -> dict[str, Any]:
        """The keys timm's ``resolve_data_config`` / ``pretrained_cfg`` use."""
        return {
            "input_size": tuple(self.input_size),
            "mean": tuple(self.mean),
            "std": tuple(self.std),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
        }

    def augment(self) -> AugmentConfig:
        """An :class:`AugmentConfig` whose evaluation transform is this preprocessing."""
        interpolation = self.interpolation if self.interpolation in INTERPOLATIONS else "bicubic"
        plain_resize = self.crop_mode == "squash" and self.crop_pct >= 1.0
        return AugmentConfig(interpolation=interpolation, crop_pct=None if plain_resize else self.crop_pct)

    @classmethod
    def from_augment(cls, input_size, mean, std, augment: AugmentConfig) -> Preprocess:
        """The preprocessing of ofakd's evaluation transform for ``augment``."""
        interpolation = "bicubic" if augment.interpolation == "random" else augment.interpolation
        if augment.crop_pct is None:
            crop_pct, crop_mode = 1.0, "squash"
        else:
            crop_pct, crop_mode = float(augment.crop_pct), "center"
        return cls(
            tuple(int(v) for v in input_size), tuple(float(v) for v in mean), tuple(float(v) for v in std),
            interpolation, crop_pct, crop_mode,
        )

    @classmethod
    def from_timm(cls, cfg: dict[str, Any]) -> Preprocess:
        """From a timm ``pretrained_cfg`` / data config."""
        return cls(
            tuple(int(v) for v in cfg["input_size"]),
            tuple(float(v) for v in cfg["mean"]),
            tuple(float(v) for v in cfg["std"]),
            str(cfg.get("interpolation", "bicubic")),
            float(cfg.get("crop_pct") or 1.0),
            str(cfg.get("crop_mode") or "center"),
        )


@dataclass
class StudentInfo:
    """Everything known about a loaded student besides its weights."""

    architecture: str
    """timm model name."""
    model_kwargs: dict[str, Any]
    """timm.create_model kwargs it was built with (num_classes excluded)."""
    num_classes: int
    preprocess: Preprocess
    kind: str
    """"run" (a run folder), "weights" (a .safetensors file), "timm" (an exported timm folder), "onnx" (an
    exported .onnx file, run by onnxruntime) or "torchscript" (an exported TorchScript file)."""
    path: Path
    """The path given."""
    weights: str
    """Where the weights came from, in words (e.g. "best.safetensors (EMA, epoch 3)")."""
    ema: bool | None = None
    """True when the weights are an EMA of the student; None when unknown."""
    epoch: int | None = None
    top1: float | None = None
    """Validation top-1 the run recorded for these weights, when it did."""
    class_names: list[str] | None = None
    run_dir: Path | None = None
    data: DataConfig | None = None
    """The run's data set, when loaded from a run (for evaluating on its validation split)."""
    notes: list[str] = field(default_factory=list)
    """Things worth telling the user (e.g. which checkpoint was used instead of best.safetensors)."""
    recipe: dict[str, Any] | None = None
    """The run's config.yaml (teacher, method, data, train settings), when loaded from a run."""
    summary: dict[str, Any] | None = None
    """The run's summary.json (accuracies, image counts), when loaded from a run."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["run_dir"] = str(self.run_dir) if self.run_dir is not None else None
        out["data"] = self.data.model_dump(mode="json") if self.data is not None else None
        out["preprocess"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.preprocess).items()}
        return out
