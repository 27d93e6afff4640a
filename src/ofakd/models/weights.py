"""Load a local checkpoint into a model: timm/official state_dict, {"model": ...},
{"state_dict": ...}, {"state_dict_ema"/"model_ema": ...} or safetensors. Never unpickles code."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from ..run_folder import WeightsDamaged, read_weights
from ..torch_load import pickle_error_line, refused_object

_NESTED_KEYS = ("model", "state_dict", "model_state_dict", "student")
_PREFIXES = ("module.", "model.", "student.", "_orig_mod.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped from common containers (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {str(path)!r} does not exist; pass the path of a .pth/.pt/.safetensors file")
    if path.suffix == ".safetensors":
        try:
            return read_weights(path)  # its content hash checked when ofakd wrote it
        except WeightsDamaged:
            raise
        except Exception as err:  # safetensors raises several types for bad files
            raise ModelError(f"checkpoint {str(path)!r} is not a readable safetensors file ({err})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = refused_object(err)
        if refused is None:
            raise ModelError(f"checkpoint {str(path)!r} is truncated or not a PyTorch file ({pickle_error_line(err)})") from None
        raise ModelError(
            f"checkpoint {str(path)!r} holds more than tensors and was refused for safety ({refused}: loading it "
            "could run code; ofakd loads with weights_only=True only); re-save its state_dict or use safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ModelError(f"checkpoint {str(path)!r} is truncated or not a PyTorch file ({err})") from None
    return _unwrap(obj, path)


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, dict) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in _NESTED_KEYS if k in obj and isinstance(obj[k], dict)), None)
        if inner is None:
            raise ModelError(
                f"checkpoint {str(path)!r} has no state_dict (top-level keys: {sorted(obj)[:8]}); "
                "expected a state_dict or {'model': state_dict} / {'state_dict': state_dict}"
            )
        obj = inner
    if not isinstance(obj, dict):
        raise ModelError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state_dict")
    return {_strip_prefix(k): v for k, v in obj.items()}


def _is_tensor_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _strip_prefix(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def state_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """How ``state`` fails to fit ``model`` (missing, unexpected, reshaped keys, a few named), or None."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} of another shape (e.g. {', '.join(wrong_shape[:2])})")
    return "; ".join(parts) or None


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], mismatch: Callable[[str], Exception]) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch raises ``mismatch(what differs)``, which names the
    missing, unexpected and reshaped keys."""
    problem = state_mismatch(model, state)
    if problem:
        raise mismatch(problem)
    model.load_state_dict(state, strict=True)


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load ``path`` into ``model`` strictly; a mismatch names the missing and unexpected keys."""
    load_strict(model, read_state_dict(path), lambda problem: ModelError(
        f"checkpoint {str(path)!r} does not fit {type(model).__name__}: {problem}. "
        "Check the model name, num_classes and model kwargs (img_size, patch_size, in_chans) it was trained with."
    ))
