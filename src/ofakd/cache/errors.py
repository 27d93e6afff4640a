"""Errors of the teacher cache: one line naming the file or field, what was found and the fix."""

from __future__ import annotations

from ..errors import OfakdError


class CacheError(OfakdError, ValueError):
    """A teacher cache is missing, incomplete, damaged, or cannot serve this run."""


class CacheMismatchError(CacheError):
    """The cache was recorded for other settings than the run asks for (names the field)."""

    def __init__(self, directory, field: str, recorded, requested, fix: str = "") -> None:
        self.field, self.recorded, self.requested = field, recorded, requested
        fix = fix or "record a cache for these settings (`ofakd cache record`) or run without --teacher-cache"
        super().__init__(
            f"teacher cache {directory}: {field} was {_show(recorded)} when recorded but is {_show(requested)} "
            f"in this run; {fix}"
        )


def _show(value) -> str:
    import json

    return json.dumps(value) if not isinstance(value, str) else repr(value)
