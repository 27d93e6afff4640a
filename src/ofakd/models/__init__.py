"""Models: timm models by name with local checkpoints, their stage features and input specs.

The section of a run config that names a model (:class:`~ofakd.models.model_config.ModelConfig`) is light; the
rest imports torch and timm on use.
"""

from ..lazy import lazy_exports
from .model_config import ModelConfig

__getattr__, __dir__ = lazy_exports(__name__, {
    ".factory": ("create_model",),
    ".info": ("InputSpec", "count_parameters", "input_spec", "num_classes"),
    ".stages": ("default_stage_indices", "stage_positions"),
    ".tap": ("ModelOutput", "ModelTap"),
})

__all__ = [
    "InputSpec",
    "ModelConfig",
    "ModelOutput",
    "ModelTap",
    "count_parameters",
    "create_model",
    "default_stage_indices",
    "input_spec",
    "num_classes",
    "stage_positions",
]
