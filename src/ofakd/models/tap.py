"""One forward of a model giving its logits and, on request, stage features and the penultimate embedding.

:class:`ModelTap` is what methods, the teacher and CKA read models through (no monkey-patching):

* **logits only** (no positions, no embedding): the plain ``model(x)``; works for any ``nn.Module``;
* **stage features**: ``positions`` in ``model.feature_info`` (the extra position
  ``len(model.feature_info)`` is the head input, the features ``forward_head`` pools), through timm's
  ``forward_intermediates`` (or forward hooks on the ``feature_info`` modules for models without it);
* **the penultimate embedding**: the pooled pre-logits ``forward_head(final, pre_logits=True)``
  (ResNet: the global-pooled map; ViT: the class token after the final norm; Mixer: the token mean);
* **any nn.Module** (no ``forward_head``, or stage ``modules`` named): the plain ``model(x)`` with forward
  hooks on the named stage modules (position *k* is the *k*-th name) and, for the embedding, on the
  input of its last ``nn.Linear`` (the classifier), flattened.

The logits come from ``forward_head`` on the same forward's final features, so they equal
``model(x)``. Whether a feature is a map (B, C, H, W) or tokens (B, N, D) is read from the tensor:
a model that can give tokens (``output_fmt='NLC'``) gives tokens, its prefix tokens (class,
distillation, register) first. Which positions are "the four stages": :mod:`ofakd.models.stages`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ModelError
from .info import last_linear
from .stages import STAGE_NAMES_HINT, default_stage_indices, feature_entries


@dataclass
class ModelOutput:
    """What one forward of a model gives a method: logits, and what it asked for besides."""

    logits: torch.Tensor
    """(B, K); equal to ``model(x)``."""
    features: dict[int, torch.Tensor] = field(default_factory=dict)
    """Stage features by ``feature_info`` position: maps (B, C, H, W) or tokens (B, N, D)."""
    embedding: torch.Tensor | None = None
    """(B, D) penultimate embedding (pooled pre-logits), when asked for."""

    def select(self, positions: Iterable[int]) -> list[torch.Tensor]:
        """The features at ``positions``, in that order."""
        return [self.features[p] for p in positions]


class ModelTap:
    """Callable ``tap(x) -> ModelOutput`` over one forward of ``model``.

    ``positions`` are ``feature_info`` positions (:func:`ofakd.models.stages.default_stage_indices`
    gives the four OFA stages); ``embedding`` asks for the penultimate embedding too. With neither,
    the tap is the plain forward. ``modules`` names the stage modules of a model without timm's
    ``feature_info`` (or overrides it). ``num_prefix_tokens`` tells how many leading tokens of a token
    feature are prefix tokens; ``has_class_token`` whether the first of them is a class token.
    """

    def __init__(
        self,
        model: nn.Module,
        positions: Sequence[int] = (),
        *,
        embedding: bool = False,
        modules: Sequence[str] | None = None,
    ) -> None:
        self.model = model
        self.modules = list(modules) if modules is not None else None
        """Named stage modules (positions index this list), or None: ``model.feature_info``."""
        self.hooked = self.modules is not None or not hasattr(model, "forward_head")
        """True: one plain ``model(x)`` with forward hooks (any nn.Module); False: timm's feature API."""
        self._check(positions)
        self.positions = list(positions)
        """Positions in the order given (a position may repeat, e.g. a model with fewer than 4 reductions)."""
        self.embedding = embedding
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self.has_class_token = bool(
            getattr(model, "has_class_token", getattr(model, "cls_token", None) is not None)
        ) and self.num_prefix_tokens > 0
        self._token_format: bool | None = None  # decided on the first forward that takes features

    @classmethod
    def stages(cls, model: nn.Module, *, embedding: bool = False, modules: Sequence[str] | None = None) -> ModelTap:
        """A tap over the model's four default OFA stages (or its four named stage ``modules``)."""
        return cls(model, default_stage_indices(model, modules), embedding=embedding, modules=modules)

    def widen(self, positions: Sequence[int] = (), *, embedding: bool = False) -> None:
        """Also take the features at ``positions`` (and the embedding when asked) from now on."""
        new = [p for p in dict.fromkeys(positions) if p not in self.positions]
        self._check(new)
        self.positions += new
        self.embedding = self.embedding or embedding

    def _check(self, positions: Sequence[int]) -> None:
        if not positions:
            return
        last = self.available_positions()[-1]
        for position in positions:
            if not 0 <= position <= last:
                what = (f"{last + 1} named stage modules" if self.hooked
                        else f"{last} feature_info entries, and {last} for the head input")
                raise ModelError(
                    f"stage index {position} is out of range for {type(self.model).__name__}: valid are "
                    f"0..{last} ({what})"
                )

    # ---- facts ---------------------------------------------------------------
    @functools.cached_property
    def head_input(self) -> int:
        """The position of the head input (one past the last ``feature_info`` entry or stage name)."""
        return len(feature_entries(self.model, self.modules))

    @property
    def names(self) -> list[str]:
        """Human names of the positions (feature_info module names or stage names, or ``head_input``)."""
        entries = feature_entries(self.model, self.modules)
        return [entries[p]["module"] if p < len(entries) else "head_input" for p in self.positions]

    def available_positions(self) -> list[int]:
        """Every position this model can give: all feature_info entries, then the head input (a hooked
        model: its named stage modules only)."""
        return list(range(self.head_input + (0 if self.hooked else 1)))

    # ---- forward -------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> ModelOutput:
        if not self.positions and not self.embedding:
            return ModelOutput(self.model(x))
        if self.hooked:
            return self._forward_hooked(x)
        head_input = self.head_input
        wanted = sorted({p for p in self.positions if p < head_input})
        if hasattr(self.model, "forward_intermediates"):
            final, taken = self._forward_intermediates(x, wanted)
        else:
            final, taken = self._forward_hooks(x, wanted)
        features = dict(taken)
        if head_input in self.positions:
            features[head_input] = self._as_nchw(final) if final.dim() == 4 else final
        embedding = None
        if self.embedding:
            embedding = self.model.forward_head(final, pre_logits=True)
            if embedding.dim() > 2:  # a head that keeps a spatial layout: pool what is left
                embedding = embedding.flatten(2).mean(dim=2)
        return ModelOutput(self.model.forward_head(final), features, embedding)

    def probe(
        self,
        input_size: Sequence[int],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        role: str = "student",
    ) -> tuple[ModelOutput, tuple[int, int]]:
        """One forward of a zero batch (2 images at ``input_size``, eval mode, no autograd), to read
        feature shapes and widths; returns it and the (H, W) the model saw (after ``transform``, e.g.
        the teacher's own input view). Errors name the fix."""
        param = next(self.model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                x = torch.zeros(2, *input_size, device=device)
                if transform is not None:
                    x = transform(x)
                out = self(x)
        except (RuntimeError, AssertionError, ValueError) as err:  # timm asserts a fixed input size
            raise ModelError(
                f"{role} forward at input size {tuple(input_size)} failed ({str(err).splitlines()[0]}); "
                "pass the input_size the models are built for"
            ) from None
        finally:
            self.model.train(was_training)
        return out, (int(x.shape[-2]), int(x.shape[-1]))

    # ---- internals -----------------------------------------------------------
    def _forward_intermediates(self, x: torch.Tensor, wanted: list[int]):
        if not wanted:  # only the head input or the embedding: one plain forward_features
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

    def _forward_hooks(self, x: torch.Tensor, wanted: list[int]):
        """Fallback for timm models without forward_intermediates: hooks on feature_info modules."""
        final, taken = self._hooked(self.model.forward_features, x, wanted)
        return final, [(p, self._as_nchw(f) if f.dim() == 4 else f) for p, f in sorted(taken.items())]

    def _forward_hooked(self, x: torch.Tensor) -> ModelOutput:
        """Any nn.Module: ``model(x)`` with hooks on the named stage modules (and the classifier's input)."""
        classifier = last_linear(self.model, "classifier (nn.Linear) for the embedding") if self.embedding else None
        inputs: list[torch.Tensor] = []
        handle = classifier.register_forward_pre_hook(lambda _m, args: inputs.append(args[0])) if classifier else None
        try:
            logits, taken = self._hooked(self.model, x, sorted(set(self.positions)))
        finally:
            if handle is not None:
                handle.remove()
        if classifier is not None and not inputs:
            raise ModelError(f"the last nn.Linear of {type(self.model).__name__} did not run in its forward; "
                             "the penultimate embedding is read from its input")
        return ModelOutput(logits, taken, inputs[-1].flatten(1) if inputs else None)

    def _hooked(self, run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, wanted: list[int]):
        """``run(x)`` with forward hooks taking the outputs of the modules at positions ``wanted``."""
        entries = feature_entries(self.model, self.modules) if wanted else []
        modules = dict(self.model.named_modules())
        taken: dict[int, torch.Tensor] = {}
        handles = [
            modules[entries[p]["module"]].register_forward_hook(
                lambda _m, _i, out, p=p: taken.__setitem__(p, out)
            )
            for p in wanted
        ]
        try:
            out = run(x)
        finally:
            for handle in handles:
                handle.remove()
        for p in wanted:
            self._check_taken(entries[p]["module"], taken.get(p))
        return out, taken

    def _check_taken(self, name: str, feature) -> None:
        """A hooked stage module's output must be one map (B, C, H, W) or tokens (B, N, D)."""
        model = type(self.model).__name__
        if feature is None:
            raise ModelError(f"module {name!r} of {model} did not run in its forward; {STAGE_NAMES_HINT} "
                             "naming modules its forward calls")
        if not isinstance(feature, torch.Tensor) or feature.dim() not in (3, 4):
            shape = tuple(feature.shape) if isinstance(feature, torch.Tensor) else type(feature).__name__
            raise ModelError(f"module {name!r} of {model} gives {shape}, not a map (B, C, H, W) or tokens (B, N, D); "
                             f"{STAGE_NAMES_HINT} naming modules that return one tensor")

    def _as_nchw(self, feature: torch.Tensor) -> torch.Tensor:
        """Head input maps may be channels-last (Swin): detect by the model's feature width."""
        width = getattr(self.model, "num_features", None)
        if feature.dim() == 4 and width is not None and feature.shape[1] != width and feature.shape[-1] == width:
            return feature.permute(0, 3, 1, 2)
        return feature
