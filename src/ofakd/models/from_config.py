"""A model from a run config's ``teacher:`` / ``student:`` section: built, its input spec, a forward check."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, ModelError, ModelKwargsError
from .factory import create_model
from .info import InputSpec, describe_input, input_spec
from .model_config import ModelConfig
from .weights import read_state_dict


def build_model(cfg: ModelConfig, num_classes: int, role: str) -> nn.Module:
    """The timm model of section ``role`` (teacher/student) with ``num_classes`` outputs and its weights; its
    ``pretrained_cfg`` describes the section's input (input_size, mean, std)."""
    if not cfg.name:
        flag = "--model" if role == "student" else f"--{role}"
        raise ConfigError(f"config: {role}.name is required: pass {flag} NAME (a timm model name, e.g. resnet18)")
    kwargs = dict(cfg.kwargs)
    if cfg.input_size is not None and cfg.input_size[0] != 3:
        kwargs.setdefault("in_chans", cfg.input_size[0])
    if cfg.pretrained is True:  # the weights of the tag / Hub repo in cfg.name, through timm and huggingface_hub
        kwargs["pretrained"] = True
    elif isinstance(cfg.pretrained, str):
        if not Path(cfg.pretrained).is_file():
            raise ModelError(
                f"{role}.pretrained: {cfg.pretrained!r} does not exist; pass a local weights file, or true for the "
                f"Hub weights of the tag in {role}.name (e.g. resnet50.a1_in1k or hf-hub:timm/resnet50.a1_in1k)"
            )
        read_state_dict(cfg.pretrained)  # checked before timm reads it: ofakd's sha256, no pickled code
        kwargs["pretrained"] = True
        kwargs["pretrained_cfg_overlay"] = {**kwargs.get("pretrained_cfg_overlay", {}), "file": str(cfg.pretrained)}
    try:
        model = create_model(cfg.name, num_classes=num_classes, checkpoint=cfg.checkpoint, **kwargs)
    except ModelKwargsError as err:
        if not cfg.kwargs:
            raise
        raise ConfigError(
            f"{err}; {role}.kwargs {dict(cfg.kwargs)} (a recipe's are for the recipe's own {role}) do not fit "
            f"{cfg.name!r}: clear them with --set {role}.kwargs={{}}, or keep only those {cfg.name} takes "
            f"(--set {role}.kwargs.NAME=VALUE)"
        ) from None
    describe_input(model, asdict(model_spec(model, cfg)))  # the section's input_size, mean and std
    return model


def model_spec(model: nn.Module, cfg: ModelConfig) -> InputSpec:
    """The model's own input spec with the config's input_size/mean/std where given."""
    spec = input_spec(model)
    return InputSpec(
        input_size=tuple(cfg.input_size) if cfg.input_size is not None else spec.input_size,
        mean=tuple(cfg.mean) if cfg.mean is not None else spec.mean,
        std=tuple(cfg.std) if cfg.std is not None else spec.std,
        interpolation=spec.interpolation,
        crop_pct=spec.crop_pct,
    )


def check_forward(model: nn.Module, input_size: tuple[int, int, int], role: str, name: str | None) -> None:
    """Run two blank images of ``input_size`` through ``model``; a clear error when it cannot take them."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_size))
    except (RuntimeError, AssertionError, ValueError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ModelError(
            f"{role} {name} cannot take {role}.input_size {list(input_size)} ({reason}); set {role}.input_size "
            f"to what the model is built for (a ViT/Swin also needs {role}.kwargs.img_size)"
        ) from None
    finally:
        model.train(was_training)
