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

**Any nn.Module** (no ``feature_info``): name its four stage modules (``modules=["layer1", "layer2",
"layer3", "layer4"]``, dotted paths in ``model.named_modules()``); their outputs, taken by forward
hooks, are the stages, and position *k* is the *k*-th name.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..errors import ModelError
from ..suggest import close_matches

STAGE_NAMES_HINT = "pass student_stages=[...] / teacher_stages=[...] to create_distiller"


def feature_entries(model: nn.Module, modules: Sequence[str] | None = None) -> list[dict]:
    """The model's feature positions as dicts (``module``, and ``num_chs``, ``reduction`` from timm):
    ``model.feature_info``, or one entry per name of ``modules`` when given."""
    if modules is not None:
        return named_entries(model, modules)
    info = getattr(model, "feature_info", None)
    if not info:
        raise ModelError(
            f"{type(model).__name__} has no timm feature_info, so its stage features must be named: "
            f"{STAGE_NAMES_HINT} with four of its module names (its top-level modules: {_children(model)})"
        )
    if hasattr(info, "get_dicts"):
        return list(info.get_dicts())
    return [dict(entry) for entry in info]


def named_entries(model: nn.Module, modules: Sequence[str]) -> list[dict]:
    """One entry per module name, each checked to name a submodule of ``model``."""
    if isinstance(modules, str) or len(modules) != 4:
        raise ModelError(
            f"stage modules of {type(model).__name__}: name 4 modules (one per OFA stage 1-4; repeat one for a "
            f"model with fewer stages), got {modules!r}"
        )
    known = dict(model.named_modules())
    for name in modules:
        if not name or name not in known:
            close = close_matches(str(name), [n for n in known if n], n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ModelError(
                f"{type(model).__name__} has no module {name!r}; {hint}name modules by their dotted path in "
                f"model.named_modules() (its top-level modules: {_children(model)})"
            )
    return [{"module": name} for name in modules]


def _children(model: nn.Module) -> str:
    names = [name for name, _ in model.named_children()]
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") if names else "none"


def default_stage_indices(model: nn.Module, modules: Sequence[str] | None = None) -> list[int]:
    """The four default stage positions of ``model`` (see the module docstring for the rule); with
    named stage ``modules``, their positions 0-3."""
    entries = feature_entries(model, modules)
    if modules is not None:
        return list(range(len(entries)))
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


def stage_positions(
    model: nn.Module,
    stages: Sequence[int],
    feature_indices: Sequence[int] | None = None,
    modules: Sequence[str] | None = None,
) -> list[int]:
    """Feature positions of OFA-numbered ``stages`` (1-4) of ``model``.

    ``feature_indices`` (four explicit ``feature_info`` positions) replaces the documented default stage
    map; named stage ``modules`` replace ``feature_info`` altogether (position k is the k-th name).
    """
    if modules is not None and feature_indices is not None:
        raise ModelError(
            f"{type(model).__name__}: give its stages as module names or as feature_indices, not both"
        )
    positions = list(feature_indices) if feature_indices is not None else default_stage_indices(model, modules)
    if len(positions) != 4:
        raise ModelError(f"feature indices need 4 positions (one per stage 1-4), got {positions}")
    return [positions[stage - 1] for stage in stages]


def stage_input_modules(
    model: nn.Module, positions: Sequence[int], modules: Sequence[str] | None = None
) -> list[tuple[str, int | None]]:
    """For each of the four stage ``positions`` (:func:`stage_positions` of stages 1-4): the module whose input
    is that stage's input, and the input's channel count when timm's ``feature_info`` tells it (else None).

    * **named stage modules** (``modules``): stage *k*'s module itself;
    * **feature_info**: stage *k* ≥ 2 starts at the module after stage *k*-1's (position ``p_{k-1} + 1``), stage 1
      at the first module with stage 1's reduction (ViT at stages 1, 3, 9, 11: blocks 0, 2, 4, 10; ResNet: layer1,
      after the stem's ``act1``; ConvNeXt/Swin: each stage, its downsampling included); a stage that repeats the
      previous one's position (a model with fewer stages) starts where that one starts.
    """
    entries = feature_entries(model, modules)
    if modules is not None:
        return [(entries[p]["module"], None) for p in positions]
    if positions[0] >= len(entries):
        raise ModelError(f"stage 1 of {type(model).__name__} is its head input: pass other teacher_feature_indices")
    first = next(i for i, entry in enumerate(entries) if entry["reduction"] == entries[positions[0]]["reduction"])
    starts = [first]
    for previous, position in zip(positions[:-1], positions[1:]):
        starts.append(starts[-1] if position == previous else previous + 1)
    for stage, start in enumerate(starts[1:], start=2):
        if start >= len(entries):
            raise ModelError(
                f"stage {stage - 1} of {type(model).__name__} ends at its last feature module (position "
                f"{positions[stage - 2]}), so no module starts stage {stage}: pass other teacher_feature_indices"
            )
    return [(entries[s]["module"], entries[max(s - 1, 0)].get("num_chs")) for s in starts]
