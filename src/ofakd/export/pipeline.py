"""``export_student``: load a trained student, write it in one format, check it, then move it into place.

Nothing lands in the output folder unless the check passed: files are written to a hidden
temporary folder inside it, loaded back the way a user would (plain timm, onnxruntime,
torch.jit.load), compared with the PyTorch student on random inputs, then moved in.
Several formats of the same weights can share one folder; ``config.json`` lists them all, with the
sha256 of each file (checked when ofakd loads a timm export back).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ExportCheckError, ExportError, StudentSourceError, UnknownFormatError
from ..models.info import count_parameters, nonfinite_tensors
from ..run_folder import EXPORT_CONFIG, EXPORT_WEIGHTS, writing
from ..run_folder.digest import file_sha256
from ..run_folder.no_links import refuse_link
from .config_json import (
    build_config,
    merge_existing,
    read_config,
    recorded_files,
    weights_digest,
    write_config,
)
from .model_card import CARD_FILE, model_card
from .onnx_export import DEFAULT_OPSET, export_onnx, onnx_runner
from .onnx_export import WEIGHTS_FILE as ONNX_FILE
from .run_loading import load_student
from .student import StudentInfo
from .timm_export import load_with_timm, write_timm_weights
from .torchscript_export import WEIGHTS_FILE as TORCHSCRIPT_FILE
from .torchscript_export import export_torchscript, load_torchscript
from .verify import DEFAULT_ATOL, CheckResult, compare, random_batches

FORMATS = ("timm", "onnx", "torchscript")
_RUNTIME = {"timm": "timm", "onnx": "onnxruntime", "torchscript": "torch.jit"}
_MAIN_FILE = {"timm": EXPORT_WEIGHTS, "onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE}


@dataclass
class ExportResult:
    format: str
    out_dir: Path
    files: list[str]
    """File names written into ``out_dir`` (config.json included)."""
    exporter: str
    """How: "safetensors" (timm), "dynamo"/"legacy" (ONNX), "script"/"trace" (TorchScript)."""
    check: CheckResult
    info: StudentInfo

    @property
    def max_abs_diff(self) -> float:
        return self.check.max_abs_diff

    def describe(self) -> str:
        how = {"safetensors": "", "dynamo": " (torch.export-based ONNX exporter)",
               "legacy": " (TorchScript-based ONNX exporter)", "script": " (torch.jit.script)",
               "trace": " (torch.jit.trace)"}[self.exporter]
        main = self.out_dir / _MAIN_FILE[self.format]
        return (f"exported {self.info.architecture} [{self.info.weights}] as {self.format} to {main}{how}\n"
                f"check: {self.check.describe(_RUNTIME[self.format])}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "out_dir": str(self.out_dir),
            "files": self.files,
            "exporter": self.exporter,
            "max_abs_diff": self.check.max_abs_diff,
            "check_images": self.check.images,
            "check_batch_sizes": list(self.check.batch_sizes),
            "atol": self.check.atol,
            "student": self.info.to_dict(),
        }


def check_format(fmt: str) -> str:
    """``fmt`` lower-cased if it is a known format, else a one-line error."""
    name = str(fmt).strip().lower()
    if name not in FORMATS:
        raise UnknownFormatError(f"unknown export format {fmt!r}; use --format {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    return name


def export_student(
    source: str | Path,
    fmt: str,
    out_dir: str | Path,
    *,
    ema: bool = True,
    weights: str = "best",
    overwrite: bool = False,
    atol: float = DEFAULT_ATOL,
    opset: int = DEFAULT_OPSET,
    onnx_exporter: str = "auto",
    torchscript_method: str = "auto",
    repo_id: str | None = None,
) -> ExportResult:
    """Export the student of ``source`` (a run folder, an ofakd ``.safetensors`` or a timm export)
    as ``fmt`` into ``out_dir``, checked against PyTorch to ``atol``.

    ``ema``: on a run trained with EMA, export the EMA weights (default) or, with False, the
    plain student. ``weights``: "best" (best.safetensors) or "last" (last.pt). A timm export also gets
    a model card (``README.md``); ``repo_id`` names the Hub repo it will be pushed to, for its usage line.
    """
    fmt = check_format(fmt)
    if atol <= 0:
        raise ExportError(f"--atol must be > 0, got {atol}")
    model, info = load_student(source, weights=weights, ema=ema)
    if info.kind in ("onnx", "torchscript"):
        raise StudentSourceError(f"{source} is an {info.kind} export, which holds no weights ofakd exports again; "
                                 "export its run folder, its best.safetensors or a --format timm export of it")
    bad = nonfinite_tensors(model.state_dict().items())
    if bad:
        raise ExportError(f"the weights of {source} hold NaN/inf ({bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); "
                          "an export of them would only give NaN outputs: export weights that are finite (another run, "
                          "or --weights last / best)")
    with writing(Path(out_dir) / _MAIN_FILE[fmt]):  # a full, read-only or size-limited disk: 74 naming the export
        return _export_into(model, info, fmt, Path(out_dir), overwrite=overwrite, atol=atol, opset=opset,
                            onnx_exporter=onnx_exporter, torchscript_method=torchscript_method, repo_id=repo_id)


def _export_into(model: nn.Module, info: StudentInfo, fmt: str, out_dir: Path, *, overwrite: bool, atol: float,
                 opset: int, onnx_exporter: str, torchscript_method: str, repo_id: str | None) -> ExportResult:
    """Write, check and move into ``out_dir`` one format's export (see :func:`export_student`)."""
    out = _output_folder(out_dir, _MAIN_FILE[fmt], overwrite)
    existing = read_config(out / EXPORT_CONFIG)
    merged, stale = _export_config(model, info, out, existing, overwrite)
    merged["ofakd"]["exports"].pop(fmt, None)

    c, h, w = info.preprocess.input_size
    example = random_batches((c, h, w), (2,), seed=1)[0]
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp_name:
        tmp = Path(tmp_name)
        files, exporter, runner = _write_format(fmt, model, info, example, tmp, merged, opset=opset,
                                                onnx_exporter=onnx_exporter, torchscript_method=torchscript_method,
                                                repo_id=repo_id)
        _refuse_foreign_files(out, [*files, EXPORT_CONFIG], existing)
        check = compare(model, runner, random_batches((c, h, w)), atol)
        if not check.passed:
            raise ExportCheckError(
                f"the {fmt} export of {info.architecture} does not match PyTorch: "
                f"{check.describe(_RUNTIME[fmt])}; nothing was written to {out}. "
                + _mismatch_hint(fmt)
            )
        entry: dict[str, Any] = {"files": files, "exporter": exporter, "max_abs_diff": check.max_abs_diff,
                                 "atol": atol, "sha256": {name: file_sha256(tmp / name) for name in files}}
        if fmt == "onnx":
            entry.update(opset=opset, input="input", output="logits", dynamic_axes={"input": [0], "logits": [0]})
        merged["ofakd"]["exports"][fmt] = entry
        for name in stale:
            if name not in files and (out / name).is_file() and not (out / name).is_symlink():
                (out / name).unlink()
        write_config(tmp / EXPORT_CONFIG, merged)
        for name in [*files, EXPORT_CONFIG]:
            (tmp / name).chmod(_shared_mode())  # some writers make private files; exports are for sharing
            os.replace(tmp / name, out / name)
    return ExportResult(fmt, out, [*files, EXPORT_CONFIG], exporter, check, info)


def _output_folder(out_dir: str | Path, main_file: str, overwrite: bool) -> Path:
    """The export folder, created when missing; an export there already is kept unless ``overwrite``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; pass a folder (it is created when missing)")
    out.mkdir(parents=True, exist_ok=True)
    if (out / main_file).exists() and not overwrite:
        raise ExportError(f"{out / main_file} already exists; pass --overwrite to replace it, or another --out")
    return out


def _refuse_foreign_files(out: Path, names: list[str], existing: dict | None) -> None:
    """An export replaces only files an export wrote there (those its ``config.json`` lists), never a user's
    own ``README.md`` or ``config.json``, and never through a symbolic link."""
    recorded = recorded_files(existing)
    for name in names:
        path = out / name
        refuse_link(path)
        if path.exists() and name not in recorded:
            raise ExportError(
                f"{path} was not written by ofakd export (the folder's {EXPORT_CONFIG} does not list it), and an "
                "export never replaces a file it did not write, --overwrite included: move it away, or pass "
                "another --out"
            )


def _export_config(model: nn.Module, info: StudentInfo, out: Path, existing: dict | None,
                   overwrite: bool) -> tuple[dict, list[str]]:
    """The folder's config.json for these weights, merged with the exports already there of the same
    weights, and the files of another export that ``overwrite`` replaces."""
    config = build_config(model, info, weights_digest(model))
    merged = merge_existing(config, existing)
    if merged is not None:
        return merged, []
    if not overwrite:
        old = existing.get("ofakd") or {}
        raise ExportError(
            f"{out} already holds an export of other weights ({existing.get('architecture')}, "
            f"{old.get('weights', 'unknown source')}); pass another --out, or --overwrite to replace it"
        )
    return config, sorted(recorded_files(existing) - {EXPORT_CONFIG})


def _write_format(fmt: str, model: nn.Module, info: StudentInfo, example: torch.Tensor, tmp: Path, config: dict, *,
                  opset: int, onnx_exporter: str, torchscript_method: str,
                  repo_id: str | None = None) -> tuple[list[str], str, Callable]:
    """Write ``fmt``'s files into ``tmp``: (their names, the exporter used, a runner of the written model)."""
    if fmt == "timm":
        files = write_timm_weights(model, tmp)
        write_config(tmp / EXPORT_CONFIG, config)
        (tmp / CARD_FILE).write_text(model_card(info, count_parameters(model), repo_id))
        return [*files, CARD_FILE], "safetensors", load_with_timm(tmp)
    if fmt == "onnx":
        files, exporter = export_onnx(model, example, tmp, exporter=onnx_exporter, opset=opset, name=info.architecture)
        return files, exporter, onnx_runner(tmp)
    files, exporter = export_torchscript(model, example, tmp, method=torchscript_method,
                                         config_json=json.dumps(config), name=info.architecture)
    return files, exporter, load_torchscript(tmp)


def _shared_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _mismatch_hint(fmt: str) -> str:
    if fmt == "onnx":
        return "Try --onnx-exporter legacy or dynamo, another --opset, or raise --atol if the difference is rounding"
    if fmt == "torchscript":
        return "Try --torchscript-method script or trace, or raise --atol if the difference is rounding"
    return "Raise --atol if the difference is rounding, or report the model name as a bug"
