"""Turn a pydantic ValidationError into one line that names the field and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError

_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
}


def nearest(key: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``key`` (difflib), or None when nothing is close."""
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.5)
    return close[0] if close else None


def model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class found by walking field names ``loc`` from ``root``."""
    model = root
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model


def config_error(err: ValidationError, root: type[BaseModel], prefix: str = "") -> ConfigError:
    """One-line ConfigError for the first problem in ``err``; ``prefix`` is prepended to field paths."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    path = prefix + ".".join(str(p) for p in loc)
    if first["type"] == "extra_forbidden":
        parent = model_at(root, loc[:-1])
        valid = list(parent.model_fields) if parent is not None else []
        guess = nearest(str(loc[-1]), valid)
        stem = prefix + ".".join(str(p) for p in loc[:-1])
        if guess:
            return ConfigError(f"config: unknown key {path!r} — did you mean {_join(stem, guess)!r}?")
        return ConfigError(f"config: unknown key {path!r}; valid keys here: {', '.join(valid)}")
    return ConfigError(f"config: {path or 'config'}: {describe(first)}")


def describe(error: dict) -> str:
    """'expected an integer, got 'ten'' style text for one pydantic error."""
    kind = error["type"]
    if kind in _EXPECTED:
        text = _EXPECTED[kind]
    elif kind == "literal_error":
        text = "expected " + error["msg"].removeprefix("Input should be ")
    elif kind == "value_error":
        text = error["msg"].removeprefix("Value error, ")
    elif kind == "missing":
        return "is required"
    else:
        text = error["msg"][:1].lower() + error["msg"][1:]
    value = error.get("input")
    if isinstance(value, (str, int, float, bool)) or value is None:
        text += f", got {value!r}"
    elif isinstance(value, (list, tuple, dict)):
        text += f", got {_short(value)}"
    return text


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(stem: str, key: str) -> str:
    return f"{stem}.{key}" if stem else key
