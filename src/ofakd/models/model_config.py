"""The ``teacher:`` and ``student:`` sections of a run config: a model by name, its weights and its input
(:class:`ModelConfig`; torch-free, as the config is read by ``ofakd --help``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ModelConfig(BaseModel):
    """A timm model by name, its timm kwargs, weights and the input it expects."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    """timm model name, e.g. resnet18, deit_tiny_patch16_224; a pretrained tag (resnet50.a1_in1k) or a Hugging
    Face Hub repo (hf-hub:org/name)."""
    checkpoint: str | None = None
    """Local weights for exactly this model (state_dict / {'model': ...} / .safetensors), loaded strictly."""
    pretrained: bool | str | None = None
    """Pretrained weights loaded through timm (classifier re-initialised when classes differ): true for the
    weights of the tag or Hub repo in name (from the Hugging Face Hub cache, downloaded when missing and
    online), or the path of a local file."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra timm.create_model kwargs, e.g. {img_size: 32, patch_size: 4, drop_path_rate: 0.1}."""
    input_size: tuple[int, int, int] | None = None
    """(C, H, W) the model is fed; default: read from the model (its img_size or pretrained config)."""
    mean: tuple[float, ...] | None = None
    """Normalisation mean per channel (1 or C values); default: the model's pretrained config."""
    std: tuple[float, ...] | None = None
    """Normalisation std per channel (1 or C values); default: the model's pretrained config."""

    @field_validator("input_size")
    @classmethod
    def _input_size(cls, v):
        if v is not None and (v[0] not in (1, 3) or min(v[1:]) < 1):
            raise ValueError("must be [C, H, W] with C 1 or 3 and H, W >= 1")
        return v

    @field_validator("std")
    @classmethod
    def _std(cls, v):
        if v is not None and (not v or min(v) <= 0):
            raise ValueError("every std value must be > 0")
        return v

    @field_validator("kwargs")
    @classmethod
    def _kwargs(cls, v):
        if "num_classes" in v:
            raise ValueError("num_classes comes from the data set (data.name / data.root): remove it from the kwargs")
        if "checkpoint" in v:
            raise ValueError("a checkpoint is not a timm kwarg: set it as checkpoint (--checkpoint / --teacher-checkpoint)")
        return v
