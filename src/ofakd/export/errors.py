"""Errors of loading and exporting a trained student: one line naming the problem and the fix."""

from __future__ import annotations

from ..errors import OfakdError


class UnfinishedRunError(OfakdError):
    """The run folder holds no finished checkpoint (no epoch has completed yet)."""


class StudentSourceError(OfakdError, ValueError):
    """The path is not a run folder, an ofakd ``.safetensors`` file or an exported timm folder."""


class ExportError(OfakdError):
    """Base of the export errors."""


class UnknownFormatError(ExportError, ValueError):
    """An export format that does not exist."""


class UnsupportedExportError(ExportError):
    """The architecture cannot be exported to the asked format (the exporter failed)."""


class ExportCheckError(ExportError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


def summarize_exception(err: BaseException, limit: int = 240) -> str:
    """``Type: first meaningful line`` of an exporter's exception, shortened to ``limit`` characters."""
    lines = [line.strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and not set(line) <= set("-=*#_ ")]
    text = next((line for line in lines if not line.lower().startswith(("traceback", "file ", "from user code"))), "")
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
