"""Stage features of two models over the same minibatches of a loader.

:func:`paired_stage_features` runs both models in eval mode under
``torch.inference_mode`` on each batch and yields their stage features, so a
caller (CKA) can consume one batch at a time and memory stays that of one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import islice

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import OfakdError
from ..models.tap import ModelTap

Adapter = Callable[[torch.Tensor], torch.Tensor]

LAYER_CHOICES = ("stages", "blocks")


def build_tap(model: nn.Module, layers: str | Sequence[int] = "stages") -> ModelTap:
    """A :class:`ModelTap` over the four default stages, every block, or explicit positions.

    ``layers="blocks"`` takes every position the model can give (each ``feature_info``
    entry, then the head input).
    """
    if isinstance(layers, str):
        if layers == "stages":
            return ModelTap.stages(model)
        if layers == "blocks":
            return ModelTap(model, ModelTap(model).available_positions())
        raise OfakdError(
            f"layers must be one of {', '.join(LAYER_CHOICES)} or a list of indices, got {layers!r}"
        )
    return ModelTap(model, list(layers))


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def batch_images(batch) -> torch.Tensor:
    """The images of a loader batch: a tensor, or the first item of a tuple/list/dict."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("images", "image", "input", "x"):
            if isinstance(batch.get(key), torch.Tensor):
                return batch[key]
    raise OfakdError(
        f"cannot find images in a loader batch of type {type(batch).__name__}; yield (images, targets)"
    )


@contextmanager
def eval_mode(*models: nn.Module):
    """Put models in eval mode; restore each one's previous mode afterwards."""
    modes = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def _run(tap: ModelTap, images: torch.Tensor, adapt: Adapter | None) -> list[torch.Tensor]:
    x = images.to(model_device(tap.model), non_blocking=True)
    with torch.inference_mode():
        if adapt is not None:
            x = adapt(x)
        return tap(x).select(tap.positions)


def paired_stage_features(
    tap_a: ModelTap,
    tap_b: ModelTap | None,
    loader: Iterable,
    *,
    batches: int | None = None,
    adapt_a: Adapter | None = None,
    adapt_b: Adapter | None = None,
    progress: bool = True,
    desc: str = "cka",
) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Yield ``(features_a, features_b)`` for each of the first ``batches`` batches of ``loader``.

    ``tap_b=None`` reuses model A's features for side B (CKA of a model with itself).
    ``adapt_a``/``adapt_b`` map the loader's images to what each model expects
    (resize, renormalise); they run on the model's device. A tqdm bar counts batches on a terminal.
    """
    if batches is not None and batches < 1:
        raise OfakdError(f"batches must be >= 1, got {batches}")
    total = batches
    with suppress(TypeError):  # a loader without len()
        total = len(loader) if batches is None else min(batches, len(loader))  # type: ignore[arg-type]
    models = [tap_a.model] + ([tap_b.model] if tap_b is not None else [])
    with eval_mode(*models):
        source = loader if batches is None else islice(loader, batches)
        # disable=None: tqdm stays silent when stderr is not a terminal (a log file, a pipe, a batch job)
        bar = tqdm(source, total=total, desc=desc, unit="batch", disable=None if progress else True, leave=False)
        try:
            for batch in bar:
                images = batch_images(batch)
                feats_a = _run(tap_a, images, adapt_a)
                feats_b = feats_a if tap_b is None else _run(tap_b, images, adapt_b)
                yield feats_a, feats_b
        finally:
            bar.close()
