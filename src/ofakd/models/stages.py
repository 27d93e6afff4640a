"""Which features of a timm model are its four OFA stages (read through :class:`ofakd.models.tap.ModelTap`).

Which features are "the four stages" (documented rule, reproducing the official OFA-KD maps):

* **Isotropic models** (every ``feature_info`` entry has the same reduction: ViT, DeiT,
  MLP-Mixer, ResMLP, ...) with L blocks: block outputs ``1, 3, L-3, L-1`` (0-based) when
  L >= 8 (12 blocks: 1, 3, 9, 11; 24 blocks: 1, 3, 21, 23); with fewer blocks, four
  evenly spaced blocks ``round(linspace(0, L-1, 4))``.
* **Hierarchical models** (ResNet, ConvNeXt, Swin, MobileNet, EfficientNet, ...): the
  last block at each of the last four reductions (ResNet: layer1-4; ConvNeXt/Swin: the
  stage outputs). When the head input is wider than the last stage (a head conv, as in
  MobileNetV2/EfficientNet), stage 4 is the head input instead (MobileNetV2: the last
  block at strides 4, 8, 16 and the head conv).

Explicit ``stages`` are positions in ``model.feature_info``; the extra position
``len(model.feature_info)`` names the head input (the features ``forward_head`` pools).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..errors import ModelError


def feature_entries(model: nn.Module) -> list[dict]:
    """``model.feature_info`` as a list of dicts (module, num_chs, reduction)."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise ModelError(f"{type(model).__name__} has no timm feature_info; stage features need a timm model")
    if hasattr(info, "get_dicts"):
        return list(info.get_dicts())
    return [dict(entry) for entry in info]


def default_stage_indices(model: nn.Module) -> list[int]:
    """The four default stage positions of ``model`` (see the module docstring for the rule)."""
    entries = feature_entries(model)
    reductions = [entry["reduction"] for entry in entries]
    if len(set(reductions)) == 1:
        depth = len(entries)
        if depth >= 8:
            return [1, 3, depth - 3, depth - 1]
        return [round(i * (depth - 1) / 3) for i in range(4)]
    last_at_reduction: dict[int, int] = {}
    for position, reduction in enumerate(reductions):
        last_at_reduction[reduction] = position
    positions = sorted(last_at_reduction.values())[-4:]
    positions = [positions[0]] * (4 - len(positions)) + positions
    if getattr(model, "num_features", entries[positions[-1]]["num_chs"]) != entries[positions[-1]]["num_chs"]:
        positions[-1] = len(entries)
    return positions


def stage_positions(model: nn.Module, stages: Sequence[int], feature_indices: Sequence[int] | None = None) -> list[int]:
    """``feature_info`` positions of OFA-numbered ``stages`` (1-4) of ``model``.

    ``feature_indices`` (four explicit positions) replaces the documented default stage map.
    """
    positions = list(feature_indices) if feature_indices is not None else default_stage_indices(model)
    if len(positions) != 4:
        raise ModelError(f"feature indices need 4 positions (one per stage 1-4), got {positions}")
    return [positions[stage - 1] for stage in stages]
