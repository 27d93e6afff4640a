"""Export the bare student of a run: timm folder (safetensors + config.json), ONNX or TorchScript.

    from ofakd.export import export_student, load_student
    result = export_student("runs/NAME", "onnx", "exported/")   # checked against PyTorch
    print(result.max_abs_diff)
    model, info = load_student("runs/NAME")                       # or best.safetensors, or a timm export

Files: ``run_loading`` (which weights, rebuilt as a timm model), ``student`` (what is known about it),
``config_json`` (timm's config.json layout), ``timm_export``, ``onnx_export``, ``torchscript_export``,
``verify`` (max |export - PyTorch| on random inputs), ``pipeline`` (all of it, atomically), ``errors``.
"""

from ..errors import (
    ExportCheckError,
    ExportError,
    StudentSourceError,
    UnfinishedRunError,
    UnknownFormatError,
    UnsupportedExportError,
)
from .pipeline import FORMATS, ExportResult, check_format, export_student
from .run_loading import load_student
from .student import Preprocess, StudentInfo

__all__ = [
    "FORMATS",
    "ExportCheckError",
    "ExportError",
    "ExportResult",
    "Preprocess",
    "StudentInfo",
    "StudentSourceError",
    "UnfinishedRunError",
    "UnknownFormatError",
    "UnsupportedExportError",
    "check_format",
    "export_student",
    "load_student",
]
