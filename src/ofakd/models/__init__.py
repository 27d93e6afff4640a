"""Models: timm models by name with local checkpoints, their stage features and input specs."""

from .factory import create_model
from .info import InputSpec, count_parameters, input_spec, num_classes
from .stages import default_stage_indices, stage_positions
from .tap import ModelOutput, ModelTap

__all__ = [
    "InputSpec",
    "ModelOutput",
    "ModelTap",
    "count_parameters",
    "create_model",
    "default_stage_indices",
    "input_spec",
    "num_classes",
    "stage_positions",
]
