"""One forward, everything a method reads: logits, the penultimate embedding and stage features.

:class:`FeatureTap` extends :class:`ofakd.models.stages.StageTap` (same stage rules, same
``tap(x) -> (logits, features)`` contract) with :meth:`FeatureTap.forward_all`, which also
returns the **penultimate embedding**: the pooled pre-logits that timm's
``model.forward_head(final_features, pre_logits=True)`` gives (ResNet: the global-pooled
map; ViT: the class token after the final norm; Mixer: the token mean). It comes from the
same forward as the logits.

:func:`probe_features` runs a zero batch through a tap to read feature shapes when a method
builds its own modules (projectors, embedders); :func:`teacher_forward` is the single teacher
forward (eval, ``inference_mode``) shared by feature methods and combinations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..errors import ModelError
from ..models.stages import StageTap, default_stage_indices, feature_entries
from .base import TeacherOutput


class TapOutput(NamedTuple):
    """What one forward through a :class:`FeatureTap` gives."""

    logits: torch.Tensor
    """(B, K) — equal to ``model(x)``."""
    embedding: torch.Tensor | None
    """(B, D) penultimate embedding (pooled pre-logits); None when the tap cannot give it."""
    features: list[torch.Tensor]
    """The selected stage features, maps (B, C, H, W) or tokens (B, N, D), in ``tap.indices`` order."""


class FeatureTap(StageTap):
    """A :class:`StageTap` whose :meth:`forward_all` also returns the penultimate embedding.

    ``stages`` are ``feature_info`` positions as for StageTap (default: the four OFA stages);
    use :meth:`embedding_only` when a method needs no stage feature (cheapest forward).
    """

    @classmethod
    def embedding_only(cls, model: nn.Module) -> FeatureTap:
        """A tap that selects only the head input: one plain ``forward_features`` + head (cheapest)."""
        return cls(model, [len(feature_entries(model))])

    def forward_all(self, x: torch.Tensor) -> TapOutput:
        """Logits, penultimate embedding and stage features of one forward of the model."""
        if hasattr(self.model, "forward_intermediates"):
            final, taken = self._forward_intermediates(x)
        else:
            final, taken = self._forward_hooks(x)
        by_position = dict(taken)
        by_position[self.head_input] = self._as_nchw(final) if final.dim() == 4 else final
        embedding = self.model.forward_head(final, pre_logits=True)
        logits = self.model.forward_head(final)
        if embedding.dim() != 2:  # a head that keeps a spatial layout: pool what is left
            embedding = embedding.flatten(2).mean(dim=2) if embedding.dim() > 2 else embedding
        return TapOutput(logits, embedding, [by_position[i] for i in self.indices])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.forward_all(x)
        return out.logits, out.features


def stage_positions(model: nn.Module, stages: Sequence[int], feature_indices: Sequence[int] | None = None) -> list[int]:
    """``feature_info`` positions of OFA-numbered ``stages`` (1-4) of ``model``.

    ``feature_indices`` (four explicit positions) replaces the documented default stage map.
    """
    positions = list(feature_indices) if feature_indices is not None else default_stage_indices(model)
    if len(positions) != 4:
        raise ModelError(f"feature indices need 4 positions (one per stage 1-4), got {positions}")
    return [positions[stage - 1] for stage in stages]


def tap_output(tap: StageTap, x: torch.Tensor) -> TapOutput:
    """``forward_all`` of a FeatureTap, or the (logits, features) of a plain StageTap as a TapOutput."""
    if hasattr(tap, "forward_all"):
        return tap.forward_all(x)
    logits, features = tap(x)
    return TapOutput(logits, None, features)


def probe_features(
    tap: StageTap,
    input_size: Sequence[int],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    role: str = "student",
) -> tuple[TapOutput, tuple[int, int]]:
    """One forward of a zero batch (2 images at ``input_size``, eval mode, no autograd) through ``tap``.

    Returns the tap output (to read feature shapes and widths) and the (H, W) the model saw
    (after ``transform``, e.g. the teacher's own input transform). Errors name the fix.
    """
    model = tap.model
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(2, *input_size, device=device)
            if transform is not None:
                x = transform(x)
            out = tap_output(tap, x)
    except RuntimeError as err:
        raise ModelError(
            f"{role} forward at input size {tuple(input_size)} failed ({str(err).splitlines()[0]}); "
            "pass the input_size the models are built for"
        ) from None
    finally:
        model.train(was_training)
    return out, (int(x.shape[-2]), int(x.shape[-1]))


def teacher_forward(
    tap: StageTap,
    images: torch.Tensor,
    teacher_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> TeacherOutput:
    """The teacher's single forward: logits, stage features and embedding, under ``inference_mode``.

    Inference tensors cannot be saved for backward, so normal copies are handed out.
    """
    x = teacher_input(images) if teacher_input is not None else images
    with torch.inference_mode():
        out = tap_output(tap, x)
    return TeacherOutput(
        logits=out.logits.float().clone(),
        features=[f.clone() for f in out.features],
        embedding=out.embedding.clone() if out.embedding is not None else None,
    )
