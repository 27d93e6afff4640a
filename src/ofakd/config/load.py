"""Read recipes (shipped by name, or a YAML path), apply ``key=value`` overrides, validate.

A recipe may start with ``base: NAME_OR_PATH`` to inherit another recipe; its own keys are
merged over the base's (mappings merge key by key, anything else replaces). Overrides are
dotted paths with YAML values: ``train.lr=0.1``, ``method.eps=[1.5]``, ``student.kwargs.img_size=32``.
"""

from __future__ import annotations

import copy
import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from ..pydantic_errors import config_error
from ..suggest import nearest
from ..yaml_files import DuplicateKeyError, Loader, dump_yaml, parse_yaml, read_yaml_text
from .schema import MethodConfig, RunConfig


def parse_value(text: str) -> Any:
    """A command-line value read as YAML: ``0.1`` -> float, ``[1.5]`` -> list, ``null`` -> None."""
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKeyError as err:
        raise ConfigError(f"config: the value {text!r}: {err.problem}") from None
    except (yaml.YAMLError, RecursionError):
        return text


def list_recipes() -> list[str]:
    """Names of the recipes shipped in the package."""
    return sorted(p.name[: -len(".yaml")] for p in _recipe_folder().iterdir() if p.name.endswith(".yaml"))


def _recipe_folder():
    """``ofakd/configs`` inside the installed package (YAML files shipped as package data)."""
    return resources.files("ofakd").joinpath("configs")


def recipe_text(name: str) -> str:
    """The YAML text of shipped recipe ``name``."""
    if name not in list_recipes():
        guess = nearest(name, list_recipes())
        hint = f" — did you mean {guess!r}?" if guess else ""
        raise ConfigError(
            f"config: unknown recipe {name!r}{hint} Shipped recipes: {', '.join(list_recipes())}; "
            "or pass the path of a YAML file"
        )
    return _recipe_folder().joinpath(f"{name}.yaml").read_text()


def read_recipe(ref: str | Path, _seen: tuple[str, ...] = (), _relative_to: Path | None = None) -> dict[str, Any]:
    """The raw dict of a recipe (shipped name or YAML path), with its ``base:`` chain merged in."""
    text, where, folder = _locate(str(ref), _relative_to)
    if where in _seen:
        raise ConfigError(f"config: recipes inherit in a loop: {' -> '.join((*_seen, where))}")
    raw = parse_yaml(text, where) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {where} must hold a mapping of sections (data, train, ...)")
    base = raw.pop("base", None)
    if base is None:
        return raw
    return merge(read_recipe(str(base), (*_seen, where), folder), raw)


def _locate(ref: str, relative_to: Path | None) -> tuple[str, str, Path | None]:
    candidates = [Path(ref).expanduser()]
    if relative_to is not None and not Path(ref).is_absolute():
        candidates.insert(0, relative_to / ref)
    for path in candidates:
        if path.is_file():
            return read_yaml_text(path), str(path), path.parent
    looks_like_path = ref.endswith((".yaml", ".yml")) or "/" in ref or ref.startswith(".")
    if looks_like_path:
        raise ConfigError(f"config: file {ref!r} does not exist; pass a YAML path or a recipe name ({', '.join(list_recipes())})")
    return recipe_text(ref), f"recipe {ref!r}", None


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: nested mappings key by key, other values replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` (e.g. ``train.lr``) to a copy of ``value`` in ``raw``, creating mappings on the way (a later
    override of a key inside ``value`` then changes the copy, never the caller's object)."""
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"config: override key {key!r} is not a dotted path like train.lr")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"config: cannot set {key!r}: {where!r} is a value, not a section")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def split_override(text: str) -> tuple[str, Any]:
    """``'train.lr=0.1'`` -> ``('train.lr', 0.1)``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"config: override {text!r} must look like KEY=VALUE, e.g. train.lr=0.1")
    return key.strip(), parse_value(value)


def validate(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw dict into a :class:`RunConfig`, method options included (one-line errors): the method is
    resolved here, once (``cfg.method.resolved``), and its options written out, defaults included."""
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise config_error(err, RunConfig) from None
    except RecursionError:
        raise ConfigError("config: a value is nested too deeply") from None
    try:
        method = cfg.method.resolved
    except ConfigError as err:
        raise ConfigError(f"config: {err}") from None
    cfg = cfg.model_copy(update={"method": MethodConfig.of(method)})  # every option written out, as config.yaml has
    bad = _unusable_number(cfg.model_dump())
    if bad is not None:
        key, value = bad
        if not math.isfinite(value):
            raise ConfigError(f"config: {key}: must be a finite number, got {value}")
        raise ConfigError(f"config: {key}: {value:g} is beyond float32's range (|x| <= {FLOAT32_MAX:.4g}), which "
                          "training computes in; give a realistic value")
    return cfg


FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a config number beyond it overflows when it reaches a tensor (lr 1e300)."""


def _unusable_number(tree: Any, prefix: str = "") -> tuple[str, float] | None:
    """The first (dotted key, value) holding a NaN, an infinity or a float beyond float32's range, or None."""
    if isinstance(tree, float) and not abs(tree) <= FLOAT32_MAX:
        return prefix or "config", tree
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    for key, value in items:
        name = f"{prefix}.{key}" if prefix and isinstance(key, str) else f"{prefix}[{key}]" if prefix else str(key)
        found = _unusable_number(value, name)
        if found is not None:
            return found
    return None


def load_config(
    recipe: str | Path | None = None,
    overrides: list[tuple[str, Any]] | None = None,
) -> RunConfig:
    """Recipe (name, path or None for the defaults) + overrides ``[(dotted key, value), ...]`` -> RunConfig."""
    raw = read_recipe(recipe) if recipe is not None else {}
    for key, value in overrides or []:
        apply_override(raw, key, value)
    return validate(raw)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (what ``config.yaml`` holds; load it back with :func:`load_config`)."""
    return dump_yaml(cfg.to_dict())
