"""``--format onnx``: ``model.onnx`` with a dynamic batch axis (input ``input``, output ``logits``).

``exporter="auto"`` uses PyTorch's ``torch.export``-based exporter (``dynamo=True``, the supported
one) and falls back to the older TorchScript-based exporter when it fails; both are checked
afterwards with onnxruntime. Models over ~1.5 GiB of weights keep them in ``model.onnx.data``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import UnsupportedExportError, summarize_exception
from ..run_folder import WRITE_ERRNOS

WEIGHTS_FILE = "model.onnx"
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
"""What ONNX export and evaluation need: the ``export`` extra."""
EXPORTERS = ("auto", "dynamo", "legacy")
DEFAULT_OPSET = 18
MIN_OPSET = 17
_EXTERNAL_DATA_BYTES = int(1.5 * 2**30)  # protobuf files stop at 2 GiB


def export_onnx(model: nn.Module, example: torch.Tensor, folder: Path, *, exporter: str = "auto",
                opset: int = DEFAULT_OPSET, name: str = "model") -> tuple[list[str], str]:
    """Write ``folder/model.onnx``; returns (files written, exporter used: "dynamo" or "legacy")."""
    if exporter not in EXPORTERS:
        raise UnsupportedExportError(f"unknown ONNX exporter {exporter!r}; use one of {', '.join(EXPORTERS)}")
    if opset < MIN_OPSET:
        raise UnsupportedExportError(f"ONNX opset {opset} is too old; use --opset {MIN_OPSET} or newer (default {DEFAULT_OPSET})")
    _require_onnx_packages()
    big = sum(t.numel() * t.element_size() for t in model.state_dict().values()) > _EXTERNAL_DATA_BYTES
    path = folder / WEIGHTS_FILE
    failures: list[str] = []
    for attempt in (("dynamo", "legacy") if exporter == "auto" else (exporter,)):
        for stale in folder.glob(f"{WEIGHTS_FILE}*"):  # a failed attempt's leftovers
            stale.unlink()
        try:
            _export(model, example, path, attempt, opset, big)
        except Exception as err:  # the exporters raise many types
            disk = disk_error(err)
            if disk is not None:  # the disk cannot take the file: no exporter can help
                raise disk from err
            failures.append(f"{attempt} exporter: {summarize_exception(err)}")
            continue
        return sorted(p.name for p in folder.glob(f"{WEIGHTS_FILE}*")), attempt
    raise UnsupportedExportError(
        f"{name} cannot be exported to ONNX (opset {opset}): {'; '.join(failures)}. "
        "Export --format torchscript or --format timm instead"
        + (", or try --onnx-exporter auto" if exporter != "auto" else ", or try another --opset")
    )


def disk_error(err: BaseException) -> OSError | None:
    """The OSError of a full, read-only or size-limited disk in ``err`` or its causes, if that is what it is."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _require_onnx_packages(packages: tuple[str, ...] = ONNX_PACKAGES, task: str = "ONNX export") -> None:
    import importlib.util

    missing = [m for m in packages if importlib.util.find_spec(m) is None]
    if missing:
        raise UnsupportedExportError(
            f"{task} needs {', '.join(missing)}: pip install -e '.[export]' from a checkout (onnx, onnxscript, "
            "onnxruntime)"
        )


def _export(model: nn.Module, example: torch.Tensor, path: Path, exporter: str, opset: int, big: bool) -> None:
    quiet = io.StringIO()
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")  # deprecation notices and tracer warnings; the check decides
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=65536)
            torch.onnx.export(
                model, (example,), str(path), dynamo=True, opset_version=opset, input_names=["input"],
                output_names=["logits"], dynamic_shapes=({0: batch},), external_data=big, verbose=False,
            )
        else:
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
    if not path.is_file():
        raise RuntimeError("the exporter wrote no file")


def onnx_runner(folder: Path):
    """``x -> logits`` (numpy) through onnxruntime on the CPU, as any ONNX user runs it, of ``folder``'s model."""
    return onnx_file_runner(Path(folder) / WEIGHTS_FILE)


def onnx_file_runner(path: Path):
    """``x -> logits`` (numpy) of the ONNX file ``path`` through onnxruntime on the CPU."""
    _require_onnx_packages(("onnxruntime",), "running an ONNX model")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor):
        return session.run(None, {input_name: x.detach().cpu().numpy()})[0]

    return run
