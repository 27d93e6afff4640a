"""``create_model``: timm.create_model plus a local checkpoint, with clear errors."""

from __future__ import annotations

import difflib
from pathlib import Path

import timm
from torch import nn

from ..errors import ModelError
from .weights import load_checkpoint


def create_model(
    name: str,
    num_classes: int | None = None,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    **kwargs,
) -> nn.Module:
    """A timm model by name (any timm kwargs: ``img_size``, ``patch_size``, ``in_chans``, ``depth`` ...).

    ``checkpoint`` is a local file (state_dict, ``{"model": ...}``, ``{"state_dict": ...}``
    or safetensors) loaded strictly with ``weights_only=True``. ``pretrained=True`` is
    accepted only together with a local file (``pretrained_cfg_overlay=dict(file=...)``):
    nothing is ever downloaded.
    """
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.5)
        hint = f" Closest timm names: {', '.join(close)}." if close else " See `timm.list_models('*pattern*')`."
        raise ModelError(f"unknown model {name!r}.{hint}")
    if pretrained and "file" not in (kwargs.get("pretrained_cfg_overlay") or {}):
        raise ModelError(
            f"pretrained=True for {name!r} would download weights; pass checkpoint=PATH "
            "(or pretrained_cfg_overlay=dict(file=PATH)) with a local file instead"
        )
    if num_classes is not None:
        if num_classes < 1:
            raise ModelError(f"num_classes must be >= 1, got {num_classes}")
        kwargs["num_classes"] = num_classes
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as err:
        raise ModelError(f"model {name!r} does not accept these kwargs {sorted(kwargs)}: {err}") from None
    except (ValueError, AssertionError, ArithmeticError, RuntimeError, KeyError, IndexError) as err:
        shown = {k: v for k, v in kwargs.items() if k not in ("pretrained_cfg_overlay",)}
        reason = (str(err).splitlines() or [type(err).__name__])[0] or type(err).__name__
        raise ModelError(
            f"model {name!r} cannot be built with kwargs {shown} ({type(err).__name__}: {reason}); check the "
            "model kwargs (student.kwargs / teacher.kwargs)"
        ) from None
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model
