"""``--format torchscript``: ``model.torchscript.pt`` (``torch.jit.load`` runs it; no ofakd, no timm).

``method="auto"`` scripts the model (keeps its Python control flow) and falls back to tracing
a batch of 2 when scripting fails. The preprocessing ``config.json`` is embedded in the file too
(``torch.jit.load(path, _extra_files={"config.json": ""})``).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import UnsupportedExportError, summarize_exception

WEIGHTS_FILE = "model.torchscript.pt"
METHODS = ("auto", "script", "trace")


def export_torchscript(model: nn.Module, example: torch.Tensor, folder: Path, *, method: str = "auto",
                       config_json: str = "{}", name: str = "model") -> tuple[list[str], str]:
    """Write ``folder/model.torchscript.pt``; returns (files, method used)."""
    if method not in METHODS:
        raise UnsupportedExportError(f"unknown TorchScript method {method!r}; use one of {', '.join(METHODS)}")
    failures: list[str] = []
    for attempt in (("script", "trace") if method == "auto" else (method,)):
        try:
            module = _compile(model, example, attempt)
        except Exception as err:  # scripting/tracing raise many types
            failures.append(f"torch.jit.{attempt}: {summarize_exception(err)}")
            continue
        buffer = io.BytesIO()  # in memory first: torch.jit.save to a file aborts the process when the disk fills
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.save's deprecation notice
            torch.jit.save(module, buffer, _extra_files={"config.json": config_json})
        (folder / WEIGHTS_FILE).write_bytes(buffer.getvalue())
        return [WEIGHTS_FILE], attempt
    raise UnsupportedExportError(
        f"{name} cannot be exported to TorchScript: {'; '.join(failures)}. "
        "Export --format onnx or --format timm instead"
        + ("" if method == "auto" else ", or try --torchscript-method auto")
    )


def _compile(model: nn.Module, example: torch.Tensor, method: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation notices and tracer warnings; the check decides
        if method == "script":
            return torch.jit.script(model)
        return torch.jit.trace(model, example, check_trace=False)


def load_torchscript(folder: Path):
    """The exported module of ``folder``, as any TorchScript user loads it."""
    return load_torchscript_file(Path(folder) / WEIGHTS_FILE)


def load_torchscript_file(path: Path):
    """The TorchScript module in ``path`` (eval mode, on the CPU), as any TorchScript user loads it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()
