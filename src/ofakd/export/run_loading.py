"""Load a trained student from a run folder, an ofakd ``.safetensors`` file or an exported timm folder.

A run folder (``runs/NAME``) holds ``config.yaml``, ``best.safetensors`` (the best epoch's weights:
the student's or its EMA's, whichever scored higher; its metadata says which) and ``last.pt``
(the last epoch: ``distiller`` state with the student under ``student.``, ``ema`` with the EMA
model under ``module.``). Which weights are taken:

- ``weights="best"``, ``ema=None``: ``best.safetensors`` as it is.
- ``ema=True`` / ``ema=False`` on a run trained with EMA: the EMA / the plain student. When
  ``best.safetensors`` holds the other kind, the last epoch's weights of the asked kind come
  from ``last.pt`` (and a note says so).
- ``weights="last"``: ``last.pt``, the EMA on an EMA run unless ``ema=False``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from ..data import dataset_num_classes
from ..data.config import AugmentConfig, DataConfig
from ..errors import OfakdError, StudentSourceError, UnfinishedRunError
from ..models.from_config import build_model, model_spec
from ..models.info import describe_input
from ..models.model_config import ModelConfig
from ..models.weights import load_strict
from ..pydantic_errors import config_error
from ..run_folder import (
    BEST,
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    LAST,
    RunRecord,
    StudentMetadata,
    WeightsDamaged,
    student_metadata,
)
from ..run_folder import weights_file as read_weights_file
from ..run_folder.digest import file_sha256
from .onnx_export import WEIGHTS_FILE as ONNX_FILE
from .student import Preprocess, StudentInfo
from .torchscript_export import WEIGHTS_FILE as TORCHSCRIPT_FILE
from .torchscript_export import load_torchscript_file

WEIGHT_CHOICES = ("best", "last")
EXPORTED_FILES = {ONNX_FILE: "onnx", TORCHSCRIPT_FILE: "torchscript"}
"""The files ``ofakd export`` writes that are run as they are (file name -> format)."""


def load_student(path: str | Path, *, weights: str = "best", ema: bool | None = None) -> tuple[nn.Module, StudentInfo]:
    """The student at ``path`` (eval mode, on the CPU) and what is known about it. Its ``pretrained_cfg``
    describes its preprocessing (``info.preprocess``), so ``timm.data.resolve_data_config({}, model=model)``
    gives the transforms it was evaluated with.

    ``path``: a run folder, a ``.safetensors`` file written by ofakd (``best.safetensors``, inside
    its run folder or alone), a folder written by ``ofakd export --format timm``, or a ``model.onnx`` /
    ``model.torchscript.pt`` written by ``--format onnx`` / ``torchscript`` (or its folder): an
    :class:`~ofakd.export.onnx_student.OnnxStudent` that onnxruntime runs, or the ``torch.jit.load``-ed module,
    described by the ``config.json`` beside it.
    ``weights`` and ``ema`` choose among a run's checkpoints (see the module docstring).
    """
    if weights not in WEIGHT_CHOICES:
        raise StudentSourceError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")
    path = Path(path)
    if path.is_dir():
        if RunRecord.at(path).has_config:
            return _load_run(RunRecord.at(path), weights=weights, ema=ema)
        exported = [path / name for name in EXPORTED_FILES if (path / name).is_file()]
        if (path / EXPORT_CONFIG).is_file() and not (path / EXPORT_WEIGHTS).is_file() and exported:
            return _load_exported_file(exported[0])
        if (path / EXPORT_CONFIG).is_file():
            return _load_timm_folder(path)
        raise StudentSourceError(
            f"{path} holds neither config.yaml (a run folder) nor config.json (an exported timm model); "
            "pass runs/NAME, runs/NAME/best.safetensors or a folder written by `ofakd export --format timm`"
        )
    if path.is_file() and path.suffix == ".safetensors":
        if RunRecord.at(path.parent).has_config:
            return _load_run(RunRecord.at(path.parent), weights_file=path)
        return _load_weights_file(path)
    if path.is_file() and path.name in EXPORTED_FILES:
        return _load_exported_file(path)
    if not path.exists():
        raise StudentSourceError(f"{path} does not exist; pass a run folder, a .safetensors file, an exported timm "
                                 f"folder or an exported {' or '.join(EXPORTED_FILES)}")
    raise StudentSourceError(
        f"{path} is not a run folder, a .safetensors file, an exported timm folder or an exported "
        f"{' or '.join(EXPORTED_FILES)}"
    )


# ---- run folders -------------------------------------------------------------------------------


def _section(raw: dict[str, Any], name: str, model: type[BaseModel], where: Path) -> Any:
    try:
        return model.model_validate(raw.get(name) or {})
    except ValidationError as err:
        problem = config_error(err, model, prefix=f"{name}.")
        raise StudentSourceError(f"{where}: {problem}") from None


def read_run_config(run: RunRecord) -> tuple[ModelConfig, AugmentConfig, DataConfig, dict[str, Any]]:
    """The student, augment and data sections of a run's ``config.yaml`` (and the raw dict)."""
    where = run.folder.config
    try:
        raw = run.checked_config()
    except OfakdError as err:
        raise StudentSourceError(f"{where} cannot be read: {err}") from None
    student = _section(raw, "student", ModelConfig, where)
    if not student.name:
        raise StudentSourceError(f"{where} names no student (student.name is empty); is this an ofakd run folder?")
    return student, _section(raw, "augment", AugmentConfig, where), _section(raw, "data", DataConfig, where), raw


def _num_classes(meta: StudentMetadata, summary: dict[str, Any], data: DataConfig, where: Path) -> int:
    for value in (meta.num_classes, summary.get("num_classes")):
        if isinstance(value, int) and value > 0:
            return value

    try:
        return dataset_num_classes(data)
    except OfakdError as err:
        raise StudentSourceError(f"{where}: cannot tell the number of classes ({err})") from None


def _select_run_weights(
    run: RunRecord, weights: str, ema: bool | None, ema_run: bool
) -> tuple[dict[str, torch.Tensor], StudentMetadata, str, bool | None, list[str]]:
    """(state_dict, best metadata, description, is_ema, notes) for the asked checkpoint of a run."""
    notes: list[str] = []
    if weights == "best":
        if not run.has_best:
            hint = (f"pass --weights last to use {LAST}" if run.has_checkpoint
                    else "wait for its first epoch to end, or start the run again")
            raise UnfinishedRunError(
                f"run folder {run.path} has no finished checkpoint ({BEST} is missing: no epoch has completed); {hint}"
            )
        meta = run.student_metadata()
        best_is_ema = meta.source == "ema"
        if ema is None or not ema_run or ema == best_is_ema:
            kind = "EMA" if best_is_ema else "student"
            epoch = meta.epoch
            text = f"{BEST} ({kind}" + (f", epoch {epoch})" if epoch else ")")
            return run.best_weights(), meta, text, best_is_ema, notes
        ckpt = run.checkpoint()
        epoch = int(ckpt.get("epoch", 0))
        wanted, other = ("EMA", "plain student") if ema else ("plain student", "EMA")
        notes.append(
            f"{BEST} holds the {other} (it scored higher); the {wanted} is taken from {LAST} "
            f"(last epoch, {epoch})" + ("; pass --no-ema for best.safetensors" if ema else "")
        )
        text = f"{LAST} ({'EMA' if ema else 'student'}, epoch {epoch})"
        return run.student_weights(ckpt, ema=bool(ema)), meta, text, bool(ema), notes
    ckpt = run.checkpoint()
    use_ema = ema_run and ema is not False
    meta = run.student_metadata() if run.has_best else StudentMetadata()
    text = f"{LAST} ({'EMA' if use_ema else 'student'}, epoch {int(ckpt.get('epoch', 0))})"
    return run.student_weights(ckpt, ema=use_ema), meta, text, use_ema, notes


def _load_run(
    run: RunRecord, *, weights: str = "best", ema: bool | None = None, weights_file: Path | None = None
) -> tuple[nn.Module, StudentInfo]:

    student_cfg, augment, data, raw = read_run_config(run)
    summary = run.summary_if_any()
    ema_run = (raw.get("train") or {}).get("ema_decay") is not None or bool(summary.get("ema"))
    if weights_file is not None:
        meta = student_metadata(weights_file)
        state = read_weights_file(weights_file)
        is_ema = meta.ema
        epoch = meta.epoch
        text = f"{weights_file.name}" + (f" ({'EMA' if is_ema else 'student'}, epoch {epoch})" if epoch else "")
        notes: list[str] = []
    else:
        state, meta, text, is_ema, notes = _select_run_weights(run, weights, ema, ema_run)
    num_classes = _num_classes(meta, summary, data, run.path)
    clean_cfg = student_cfg.model_copy(update={"checkpoint": None, "pretrained": None})
    try:
        model = build_model(clean_cfg, num_classes, "student")
    except OfakdError as err:
        raise StudentSourceError(f"{run.folder.config}: cannot rebuild the student ({err})") from None
    load_state_dict_strict(model, state, weights_file or run.path)
    model.eval()
    spec = model_spec(model, student_cfg)
    preprocess = Preprocess.from_augment(spec.input_size, spec.mean, spec.std, augment)
    describe_input(model, preprocess.to_timm())
    from_best = weights_file is not None or text.startswith(BEST)
    info = StudentInfo(
        architecture=student_cfg.name,
        model_kwargs=_model_kwargs(model, clean_cfg.kwargs),
        num_classes=num_classes,
        preprocess=preprocess,
        kind="run" if weights_file is None else "weights",
        path=weights_file or run.path,
        weights=text,
        ema=is_ema,
        epoch=meta.epoch if from_best else None,
        top1=meta.top1 if from_best else None,
        class_names=meta.class_names,
        run_dir=run.path,
        data=data,
        notes=notes,
        recipe=raw,
        summary=summary or None,
    )
    return model, info


def _model_kwargs(model: nn.Module, fallback: dict[str, Any]) -> dict[str, Any]:
    """The kwargs timm recorded for ``model`` (what rebuilds it), num_classes and drop rates excluded."""
    recorded = dict(getattr(model, "_model_args", None) or fallback)
    return {
        k: v for k, v in recorded.items()
        if k != "num_classes" and not k.endswith(("drop_rate", "drop_path_rate", "drop_block_rate"))
    }


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], where: Path | str) -> None:
    """Load ``state`` strictly; a mismatch names the missing, unexpected and reshaped keys."""
    load_strict(model, state, lambda problem: StudentSourceError(
        f"weights in {where} do not fit {type(model).__name__}: {problem}; "
        "the config and the weights come from different runs"
    ))


# ---- a lone .safetensors -----------------------------------------------------------------------


def _load_weights_file(path: Path) -> tuple[nn.Module, StudentInfo]:

    meta = student_metadata(path)
    name = meta.model
    num_classes = meta.num_classes
    if not name or not isinstance(num_classes, int):
        raise StudentSourceError(
            f"{path} carries no ofakd model recipe and has no config.yaml beside it; pass its run folder, "
            "or load it with ofakd.create_model(NAME, num_classes=N, checkpoint=PATH)"
        )
    cfg = ModelConfig(
        name=name,
        kwargs=meta.kwargs,
        input_size=meta.input_size,
        mean=meta.mean,
        std=meta.std,
    )
    try:
        model = build_model(cfg, num_classes, "student")
    except OfakdError as err:
        raise StudentSourceError(f"{path}: cannot rebuild the student from its metadata ({err})") from None
    load_state_dict_strict(model, read_weights_file(path), path)
    model.eval()
    spec = model_spec(model, cfg)
    preprocess = Preprocess(spec.input_size, spec.mean, spec.std, "bicubic", 1.0, "squash")
    describe_input(model, preprocess.to_timm())
    return model, StudentInfo(
        architecture=name,
        model_kwargs=_model_kwargs(model, cfg.kwargs),
        num_classes=num_classes,
        preprocess=preprocess,
        kind="weights",
        path=path,
        weights=path.name,
        ema=meta.ema,
        epoch=meta.epoch,
        top1=meta.top1,
        class_names=meta.class_names,
        data=_data_or_none(meta.data),
        notes=["no config.yaml beside the weights: preprocessing is a plain bicubic resize (the run's own "
               "interpolation and crop are unknown)"],
    )


# ---- an exported timm folder -------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON mapping in ``path`` ({} when there is none); a file that is not UTF-8 JSON text is an error."""
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError (bytes that are not text)
        raise StudentSourceError(f"{path} is not readable JSON text ({err}); export the model again") from None
    return found if isinstance(found, dict) else {}


def _load_timm_folder(path: Path) -> tuple[nn.Module, StudentInfo]:
    import timm

    config = _read_json(path / EXPORT_CONFIG)
    if "architecture" not in config:
        raise StudentSourceError(f"{path / EXPORT_CONFIG} is not a timm model config (no 'architecture')")
    if not (path / EXPORT_WEIGHTS).is_file():
        raise StudentSourceError(
            f"{path} holds no {EXPORT_WEIGHTS}; only `--format timm` exports load as PyTorch models "
            "(load model.onnx with onnxruntime, model.torchscript.pt with torch.jit.load)"
        )
    _check_export_hash(path / EXPORT_WEIGHTS, config)
    try:
        model = timm.create_model(f"local-dir:{path.resolve()}", pretrained=True)
    except Exception as err:  # timm raises several types for a bad folder
        raise StudentSourceError(f"timm cannot load {path} ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    model.eval()
    _check_built_weights(path, model, config)
    preprocess = Preprocess.from_timm(model.pretrained_cfg)
    describe_input(model, preprocess.to_timm())  # as every student ofakd loads (tuples where JSON gave lists)
    recorded = (config.get("ofakd") or {}).get("weights")
    return model, _export_info(config, path, kind="timm", num_classes=int(model.num_classes), preprocess=preprocess,
                               weights=f"exported {recorded}" if recorded else EXPORT_WEIGHTS)


def _load_exported_file(path: Path) -> tuple[nn.Module, StudentInfo]:
    """An ONNX or TorchScript export, run as its users run it (onnxruntime, ``torch.jit.load``), and what the
    ``config.json`` beside it says (its preprocessing, classes and data)."""
    fmt = EXPORTED_FILES[path.name]
    config = _read_json(path.parent / EXPORT_CONFIG)
    if "pretrained_cfg" not in config or "num_classes" not in config:
        raise StudentSourceError(
            f"{path.parent / EXPORT_CONFIG} is missing or holds no preprocessing (pretrained_cfg): {path.name} is "
            f"evaluated with the config.json `ofakd export --format {fmt}` writes beside it; export it again"
        )
    _check_export_hash(path, config, fmt=fmt)
    if fmt == "onnx":
        from .onnx_student import OnnxStudent

        model, runtime = OnnxStudent(path), "onnxruntime"
    else:
        model, runtime = load_torchscript_file(path), "torch.jit"
    return model, _export_info(config, path, kind=fmt, num_classes=int(config["num_classes"]),
                               preprocess=Preprocess.from_timm(config["pretrained_cfg"]),
                               weights=f"{path.name} ({runtime})")


def _export_info(config: dict[str, Any], path: Path, *, kind: str, num_classes: int, preprocess: Preprocess,
                 weights: str) -> StudentInfo:
    """What an export's ``config.json`` says of its student (architecture, classes' names, run, data, ...)."""
    ofakd = config.get("ofakd") or {}
    labels = config.get("label_names")
    return StudentInfo(
        architecture=str(config.get("architecture", path.stem)),
        model_kwargs={k: v for k, v in (config.get("model_args") or {}).items() if k != "num_classes"},
        num_classes=num_classes,
        preprocess=preprocess,
        kind=kind,
        path=path,
        weights=weights,
        ema=ofakd.get("ema"),
        epoch=ofakd.get("epoch"),
        top1=ofakd.get("top1"),
        class_names=list(labels) if isinstance(labels, (list, tuple)) else None,
        run_dir=Path(ofakd["run"]) if ofakd.get("run") else None,
        data=_data_or_none(ofakd.get("data")),
    )


def _check_export_hash(weights: Path, config: dict[str, Any], fmt: str = "timm") -> None:
    """The weights' sha256 against the one config.json records for export ``fmt`` (written by ``ofakd export``)."""
    ofakd = config.get("ofakd")
    if not isinstance(ofakd, dict):
        return  # not exported by ofakd: nothing recorded
    recorded = ((ofakd.get("exports") or {}).get(fmt) or {}).get("sha256", {}).get(weights.name)
    if recorded is None and "format" in ofakd:
        raise WeightsDamaged(
            f"{weights} cannot be checked: {EXPORT_CONFIG} (ofakd format {ofakd['format']}, whose exports "
            "always record it) lacks its sha256, so the folder is damaged; export it again "
            f"(ofakd export RUN_DIR --format {fmt} --overwrite)"
        )
    if recorded is None:
        warnings.warn(f"{weights} has no sha256 in {EXPORT_CONFIG} (exported by an older ofakd): it is used "
                      "unchecked", stacklevel=3)
    elif file_sha256(weights) != recorded:
        raise WeightsDamaged(
            f"{weights} is damaged: its sha256 differs from the one {EXPORT_CONFIG} records for it; export it again "
            f"(ofakd export RUN_DIR --format {fmt} --overwrite)"
        )


def _check_built_weights(path: Path, model: nn.Module, config: dict[str, Any]) -> None:
    """The model timm built from ``config.json`` must hold exactly the exported weights (``ofakd.weights_sha256``):
    an edited ``num_classes`` or ``model_args`` makes timm re-initialise the layers that no longer fit."""
    from .config_json import weights_digest

    recorded = (config.get("ofakd") or {}).get("weights_sha256") if isinstance(config.get("ofakd"), dict) else None
    if recorded is not None and weights_digest(model) != recorded:
        raise WeightsDamaged(
            f"{path / EXPORT_CONFIG} does not describe the exported weights: the model timm builds from it "
            "(architecture, num_classes, model_args) differs from the one exported (some layers would be randomly "
            "initialised); restore the folder's config.json or export it again "
            "(ofakd export RUN_DIR --format timm --overwrite)"
        )


def _data_or_none(raw: Any) -> DataConfig | None:
    if not isinstance(raw, dict):
        return None
    try:
        return DataConfig.model_validate(raw)
    except ValidationError:
        return None
