"""JSON without NaN or infinity: Python's ``json`` writes them as bare ``NaN`` / ``Infinity``, which
no JSON parser accepts. ofakd writes ``null`` for them (a diverged model's loss, a NaN head's top-1)."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every NaN/inf float (in nested dicts, lists and tuples) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(value) for value in obj]
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`finite` ``(obj)``: always valid JSON."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
