"""What ``torch.load(..., weights_only=True)`` refusing a file means: code we will not run, or bytes that are
no pickle at all. Every checkpoint ofakd reads (model weights, ``last.pt``) is loaded that way."""

from __future__ import annotations

NOT_A_PICKLE = ("Unsupported operand", "invalid load key", "could not find MARK", "truncated", "EOF")


def refused_object(err: Exception) -> str | None:
    """What ``torch.load(weights_only=True)`` refused to build (``GLOBAL builtins.exec``, a class...), or
    None when ``err`` says the bytes are no pickle at all (a damaged or foreign file)."""
    text = str(err)
    lines = [line.strip() for line in text.splitlines()]
    detail = next((line.split("error:", 1)[-1].strip() for line in lines if "WeightsUnpickler error:" in line
                   and line.split("error:", 1)[-1].strip()), None)
    if any(mark in text for mark in NOT_A_PICKLE):
        return None
    detail = detail or next((line for line in lines if "global" in line.lower()), lines[0] if lines else "")
    if detail.startswith("Unsupported global: "):
        detail = detail.removeprefix("Unsupported global: ").split(" was not")[0]
    return detail.rstrip(".") or type(err).__name__


def pickle_error_line(err: Exception) -> str:
    """The line of ``err`` that says what is wrong with the bytes (for a one-line message)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    mark = next((line for line in lines if any(m in line for m in NOT_A_PICKLE)), None)
    return mark or (lines[0] if lines else type(err).__name__)
