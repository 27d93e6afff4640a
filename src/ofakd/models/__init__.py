"""Models: timm models by name with local checkpoints, their stage features and input specs."""

from .factory import create_model
from .info import InputSpec, count_parameters, input_spec, num_classes
from .stages import StageTap, default_stage_indices

__all__ = ["InputSpec", "StageTap", "count_parameters", "create_model", "default_stage_indices", "input_spec", "num_classes"]
