"""``create_model``: timm.create_model (pretrained tags and Hub repos included) plus a local checkpoint, with
clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import timm
from torch import nn

from ..errors import ModelError, ModelKwargsError
from ..suggest import close_matches
from .hub import HF_HUB_PREFIX, hub_errors
from .info import describe_input
from .weights import load_checkpoint


def create_model(
    name: str,
    num_classes: int | None = None,
    checkpoint: str | Path | None = None,
    pretrained: bool = False,
    **kwargs,
) -> nn.Module:
    """A timm model by name (any timm kwargs: ``img_size``, ``patch_size``, ``in_chans``, ``depth`` ...).

    ``name`` is an architecture (``resnet50``), a pretrained tag (``resnet50.a1_in1k``) or a Hub repo
    (``hf-hub:org/name``, whose config.json gives the architecture). ``pretrained=True`` loads the tag's
    weights through timm and huggingface_hub (the Hub cache, ``HF_HOME``, ``HF_HUB_OFFLINE`` and mirrors
    apply; see :mod:`ofakd.models.hub`); the classifier is re-initialised when ``num_classes`` differs.
    ``checkpoint`` is a local file (state_dict, ``{"model": ...}``, ``{"state_dict": ...}`` or
    safetensors) loaded strictly with ``weights_only=True``. The model's ``pretrained_cfg`` describes its real
    input (``in_chans``, a ViT's ``img_size``), so ``timm.data.resolve_data_config({}, model=m)`` fits it.
    """
    check_model_name(name)
    if num_classes is not None:
        if num_classes < 1:
            raise ModelError(f"num_classes must be >= 1, got {num_classes}")
        kwargs["num_classes"] = num_classes
    with hub_errors(name):  # a tag's weights or a Hub repo's files may be fetched here
        try:
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
        except TypeError as err:
            unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(err))
            which = f"kwarg {unexpected.group(1)!r}" if unexpected else f"these kwargs {sorted(kwargs)}"
            raise ModelKwargsError(f"model {name!r} does not take {which} ({err})") from None
        except (ValueError, AssertionError, ArithmeticError, RuntimeError, KeyError, IndexError) as err:
            shown = {k: v for k, v in kwargs.items() if k not in ("pretrained_cfg_overlay",)}
            reason = (str(err).splitlines() or [type(err).__name__])[0] or type(err).__name__
            raise ModelKwargsError(
                f"model {name!r} cannot be built with kwargs {shown} ({type(err).__name__}: {reason}); check the "
                "model kwargs (student.kwargs / teacher.kwargs)"
            ) from None
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    describe_input(model)  # its pretrained_cfg gives its own channels and fixed size to timm's data config
    return model


def check_model_name(name: str) -> None:
    """A known timm architecture with, when tagged, a known pretrained tag (``hf-hub:`` names are the Hub's)."""
    if name.startswith((HF_HUB_PREFIX, "local-dir:")):
        return
    architecture, _, tag = name.partition(".")
    if not timm.is_model(architecture):
        close = close_matches(name, timm.list_models(), n=5)
        hint = f" Closest timm names: {', '.join(close)}." if close else " See `timm.list_models('*pattern*')`."
        raise ModelError(f"unknown model {name!r}.{hint}")
    if tag and name not in timm.list_pretrained(f"{architecture}.*"):
        tags = timm.list_pretrained(f"{architecture}.*")
        shown = ", ".join(tags[:8]) + (", ..." if len(tags) > 8 else "") if tags else "none"
        raise ModelError(f"model {architecture!r} has no pretrained tag {tag!r}; its tags: {shown}")
