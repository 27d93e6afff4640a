"""Run configs: the validated schema, shipped YAML recipes, overrides.

    cfg = load_config("cifar-cnn", [("student.name", "resnet18"), ("train.lr", 0.1)])
"""

from .load import dump_config, list_recipes, load_config, parse_value, read_recipe, validate
from .schema import MethodConfig, ModelConfig, RunConfig, RunSection, TrainConfig

__all__ = [
    "MethodConfig",
    "ModelConfig",
    "RunConfig",
    "RunSection",
    "TrainConfig",
    "dump_config",
    "list_recipes",
    "load_config",
    "parse_value",
    "read_recipe",
    "validate",
]
