"""``--format timm``: ``model.safetensors`` + ``config.json`` that plain timm loads.

    model = timm.create_model("local-dir:/path/to/export", pretrained=True)
    # or, naming the kwargs yourself (num_classes in the overlay too, else timm re-initialises a
    # classifier whose size differs from the architecture's default config):
    model = timm.create_model(arch, pretrained=True, num_classes=N, **model_args,
                              pretrained_cfg_overlay=dict(file="/path/to/export/model.safetensors", num_classes=N))
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..run_folder import EXPORT_WEIGHTS


def write_timm_weights(model: nn.Module, folder: Path) -> list[str]:
    """The bare model's state_dict as ``folder/model.safetensors`` (timm's preferred file name)."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    (folder / EXPORT_WEIGHTS).write_bytes(save(tensors, metadata={"format": "pt"}))  # an OSError when it fails
    return [EXPORT_WEIGHTS]


def load_with_timm(folder: Path) -> nn.Module:
    """The model as plain timm loads it from ``folder`` (``local-dir:`` scheme), in eval mode."""
    import timm

    return timm.create_model(f"local-dir:{Path(folder).resolve()}", pretrained=True).eval()
