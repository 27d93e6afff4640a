"""Stage features and logits of any timm model from one forward (no monkey-patching).

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

The logits come from ``forward_head`` on the same forward's final features, so they
equal ``model(x)``. Whether a feature is a map (B, C, H, W) or tokens (B, N, D) is read
from the tensor: a model that can give tokens (``output_fmt='NLC'``) gives tokens, with
its prefix tokens (class, distillation, register) first.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
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


class StageTap:
    """Callable ``tap(x) -> (logits, [stage features])`` over one forward of ``model``.

    ``tap.num_prefix_tokens`` tells how many leading tokens of a token feature are
    prefix tokens; ``tap.has_class_token`` whether the first of them is a class token.
    """

    def __init__(self, model: nn.Module, stages: Sequence[int] | None = None) -> None:
        self.model = model
        self.entries = feature_entries(model)
        self.head_input = len(self.entries)
        self.indices = list(stages) if stages is not None else default_stage_indices(model)
        for index in self.indices:
            if not (0 <= index <= self.head_input):
                raise ModelError(
                    f"stage index {index} is out of range for {type(model).__name__}: valid are 0..{self.head_input} "
                    f"({self.head_input} feature_info entries, and {self.head_input} for the head input)"
                )
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self.has_class_token = bool(
            getattr(model, "has_class_token", getattr(model, "cls_token", None) is not None)
        ) and self.num_prefix_tokens > 0
        self._token_format: bool | None = None  # decided on first call

    @property
    def names(self) -> list[str]:
        """Human names of the selected stages (feature_info module names, or ``head_input``)."""
        return [self.entries[i]["module"] if i < self.head_input else "head_input" for i in self.indices]

    def available_indices(self) -> list[int]:
        """Every position this model can give (all feature_info entries, then the head input)."""
        return list(range(self.head_input + 1))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if hasattr(self.model, "forward_intermediates"):
            final, taken = self._forward_intermediates(x)
        else:
            final, taken = self._forward_hooks(x)
        final_map = self._as_nchw(final)
        by_position = dict(taken)
        by_position[self.head_input] = final_map if final.dim() == 4 else final
        logits = self.model.forward_head(final)
        return logits, [by_position[i] for i in self.indices]

    # ---- internals -----------------------------------------------------------
    def _forward_intermediates(self, x: torch.Tensor):
        wanted = sorted({i for i in self.indices if i < self.head_input})
        if not wanted:  # only the head input: still run the full model once
            return self.model.forward_features(x), []
        if self._token_format is None:
            self._token_format = self._accepts_tokens(x, wanted)
        if self._token_format:
            final, feats = self._call_intermediates(x, wanted, "NLC")
            feats = [self._join_prefix(f) for f in feats]
        else:
            final, feats = self._call_intermediates(x, wanted, "NCHW")
        return final, list(zip(wanted, feats))

    def _accepts_tokens(self, x: torch.Tensor, wanted: list[int]) -> bool:
        """True when the model gives (B, N, D) tokens for ``output_fmt='NLC'``."""
        try:
            with torch.no_grad():
                _, feats = self._call_intermediates(x[:1], wanted[:1], "NLC")
        except (AssertionError, ValueError, NotImplementedError, TypeError):
            return False
        feature = feats[0][0] if isinstance(feats[0], tuple) else feats[0]
        return feature.dim() == 3

    def _call_intermediates(self, x: torch.Tensor, wanted: list[int], fmt: str):
        kwargs = {"indices": wanted, "output_fmt": fmt}
        if fmt == "NLC" and "return_prefix_tokens" in inspect.signature(self.model.forward_intermediates).parameters:
            kwargs["return_prefix_tokens"] = self.num_prefix_tokens > 0
        return self.model.forward_intermediates(x, **kwargs)

    @staticmethod
    def _join_prefix(feature) -> torch.Tensor:
        if isinstance(feature, tuple):
            spatial, prefix = feature
            return torch.cat([prefix, spatial], dim=1)
        return feature

    def _forward_hooks(self, x: torch.Tensor):
        """Fallback for models without forward_intermediates: hooks on feature_info modules."""
        modules = dict(self.model.named_modules())
        taken: dict[int, torch.Tensor] = {}
        handles = []
        for position in {i for i in self.indices if i < self.head_input}:
            module = modules[self.entries[position]["module"]]
            handles.append(module.register_forward_hook(lambda _m, _i, out, p=position: taken.__setitem__(p, out)))
        try:
            final = self.model.forward_features(x)
        finally:
            for handle in handles:
                handle.remove()
        return final, [(p, self._as_nchw(f) if f.dim() == 4 else f) for p, f in sorted(taken.items())]

    def _as_nchw(self, feature: torch.Tensor) -> torch.Tensor:
        """Head input maps may be channels-last (Swin): detect by the model's feature width."""
        width = getattr(self.model, "num_features", None)
        if feature.dim() == 4 and width is not None and feature.shape[1] != width and feature.shape[-1] == width:
            return feature.permute(0, 3, 1, 2)
        return feature
