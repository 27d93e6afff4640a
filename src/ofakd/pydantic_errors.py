"""One line for a pydantic ValidationError: the field's dotted path, what was wrong and, for an unknown key, the
nearest valid one. The one formatter of every validated section (config, ``augment=``, a method's options).

    config: unknown key 'train.lrr' — did you mean 'train.lr'?
    config: train.epochs: expected an integer, got 'ten'
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from .errors import ConfigError
from .suggest import nearest

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


def config_error(err: ValidationError, root: type[BaseModel], prefix: str = "") -> ConfigError:
    """``config: <problem>`` for the first problem in ``err`` (see :func:`problem`)."""
    return ConfigError(f"config: {problem(err, root, prefix)}")


def problem(err: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    """The first problem in ``err`` (raised validating ``root``) in words; ``prefix`` goes before field paths
    (``"method."``): ``unknown key 'train.lrr' — did you mean 'train.lr'?``, ``unknown key 'x'; valid keys here:
    ...`` or ``train.epochs: expected an integer, got 'ten'``."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    if first["type"] == "extra_forbidden":
        parent = model_at(root, loc[:-1])
        return unknown_key(str(loc[-1]), list(parent.model_fields) if parent is not None else [],
                           prefix + "".join(f"{part}." for part in loc[:-1]))
    path = (prefix + ".".join(str(p) for p in loc)).rstrip(".")  # (an error of a whole section: its name)
    return f"{path or 'config'}: {describe(first)}"


def unknown_key(key: str, valid: list[str], stem: str = "") -> str:
    """``unknown key 'STEMkey' — did you mean 'STEMguess'?``, or the valid keys when none is close."""
    guess = nearest(key, valid)
    if guess:
        return f"unknown key {stem + key!r} — did you mean {stem + guess!r}?"
    return f"unknown key {stem + key!r}; valid keys here: {', '.join(valid)}"


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
