"""Facts about a timm model read from the model itself: input size, channels, classes, normalisation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import timm.data
import torch
from torch import nn

from ..errors import ModelError


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: (C, H, W), mean and std per channel, resize interpolation, crop."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875


def input_spec(model: nn.Module) -> InputSpec:
    """The model's input spec. The spatial size comes from its patch embedding when it has a
    fixed one (ViT/Swin/Mixer built with ``img_size=``), else from its pretrained config."""
    cfg = timm.data.resolve_model_data_config(model)
    channels = input_channels(model)
    height, width = fixed_input_hw(model) or cfg["input_size"][1:]
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    if len(mean) != channels:
        mean, std = _fit_channels(mean, channels), _fit_channels(std, channels)
    return InputSpec((channels, height, width), mean, std, cfg.get("interpolation", "bicubic"), cfg.get("crop_pct", 0.875))


TEST_TIME_KEYS = ("test_input_size", "test_crop_pct")
"""Keys of timm's pretrained configs for the checkpoint's evaluation at another size: not this model's input."""


def describe_input(model: nn.Module, data_config: Mapping[str, Any] | None = None) -> None:
    """Make ``model.pretrained_cfg`` (what ``timm.data.resolve_data_config({}, model=model)`` reads) describe the
    input the model really takes: ``data_config`` (timm's keys: input_size, mean, std, interpolation, crop_pct,
    crop_mode), by default :func:`input_spec`'s (its channels and fixed size, not the 224 px, 3-channel
    checkpoint timm's default config describes). Mean and std get one value per channel. A model without a
    ``pretrained_cfg`` (a plain ``nn.Module``) is left as it is."""
    current = getattr(model, "pretrained_cfg", None)
    if not current:
        return
    described = dict(asdict(input_spec(model)) if data_config is None else data_config)
    channels = int(described["input_size"][0])
    for key in ("mean", "std"):
        values = tuple(float(v) for v in described[key])
        described[key] = values if len(values) == channels else _fit_channels(values, channels)
    described["input_size"] = tuple(int(v) for v in described["input_size"])
    config = {k: v for k, v in current.items() if k not in TEST_TIME_KEYS}
    config.update(described)
    model.pretrained_cfg = model.default_cfg = config  # timm keeps default_cfg as an alias


def declares_input(model: nn.Module) -> bool:
    """True when ``model`` says what input it expects: a timm ``pretrained_cfg`` (a plain ``nn.Module`` has none)."""
    return bool(getattr(model, "pretrained_cfg", None))


def fixed_input_hw(model: nn.Module) -> tuple[int, int] | None:
    """(H, W) a model with a fixed-size patch embedding (ViT/Swin/Mixer built with ``img_size=``)
    only takes; None for a model that takes any size (a CNN)."""
    for module in model.modules():
        img_size = getattr(module, "img_size", None)
        if img_size is not None and hasattr(module, "patch_size"):
            return (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    return None


def input_channels(model: nn.Module) -> int:
    """Channels of the first convolution or linear patch embedding."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 3


def num_classes(model: nn.Module) -> int:
    """Output classes: ``model.num_classes`` (timm), else the outputs of its last ``nn.Linear``."""
    value = getattr(model, "num_classes", None)
    if value is not None:
        return int(value)
    return last_linear(model, "num_classes").out_features


def num_features(model: nn.Module) -> int:
    """Width of the penultimate features: ``model.num_features`` (timm), else the inputs of its last
    ``nn.Linear`` (the classifier)."""
    value = getattr(model, "num_features", None)
    if value is not None:
        return int(value)
    return last_linear(model, "num_features").in_features


def last_linear(model: nn.Module, attribute: str = "num_classes") -> nn.Linear:
    """The last ``nn.Linear`` registered in ``model`` (its classifier in a plain ``nn.Module``); a clear error
    naming ``attribute`` (what the caller wanted to read) when it has none."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(
            f"{type(model).__name__} has no {attribute} attribute and no nn.Linear to read it from: "
            f"set model.{attribute} = N on it"
        )
    return linears[-1]


def count_parameters(module: nn.Module | None) -> int:
    """Number of parameters (all, trainable or not)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _fit_channels(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    mean_value = sum(values) / len(values)
    return tuple([mean_value] * channels)


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an inf (one host sync for all of them)."""
    floats = [(name, t) for name, t in named if t.is_floating_point()]
    if not floats:
        return []
    flags = torch.stack([torch.isfinite(t).all() for _, t in floats]).tolist()
    return [name for (name, _), ok in zip(floats, flags) if not ok]
