"""``README.md`` of a ``--format timm`` export: the Hugging Face model card (what ``push_to_hub`` shows).

It says what the student is, which teacher and method made it, on which data, how accurate it is, how to
load it with timm and the command that reproduces it. No local path reaches it (nor ``config.json``):
the run's file locations are replaced by placeholders that the command passes as flags
(``--data.root DATA_ROOT``), since they mean nothing on another machine.
"""

from __future__ import annotations

import contextlib
from pathlib import PurePath
from typing import Any

import yaml

from ..distill.method import resolve_method
from ..errors import OfakdError
from ..yaml_files import dump_yaml
from .student import StudentInfo

CARD_FILE = "README.md"

PATH_FLAGS = {
    ("data", "root"): ("--data.root", "DATA_ROOT"),
    ("teacher", "checkpoint"): ("--teacher-checkpoint", "TEACHER_WEIGHTS"),
    ("teacher", "pretrained"): ("--teacher-pretrained", "TEACHER_PRETRAINED"),
    ("teacher", "cache"): ("--teacher-cache", "TEACHER_CACHE"),
    ("student", "checkpoint"): ("--student.checkpoint", "STUDENT_WEIGHTS"),
    ("student", "pretrained"): ("--student.pretrained", "STUDENT_PRETRAINED"),
}
"""Config fields that hold local paths: the flag that gives them back and its placeholder."""


def portable_recipe(recipe: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The run's config with its local paths removed (``null``; ``run.out_dir`` back to ``runs``) and the flags
    that give them back (``["--data.root DATA_ROOT", ...]``)."""
    clean = {section: dict(values) if isinstance(values, dict) else values for section, values in recipe.items()}
    flags = []
    for (section, key), (flag, placeholder) in PATH_FLAGS.items():
        value = (clean.get(section) or {}).get(key)
        if isinstance(value, str) and value:
            clean[section][key] = None
            flags.append(f"{flag} {placeholder}")
    if isinstance(clean.get("run"), dict):
        clean["run"]["out_dir"] = "runs"
    return scrub_paths(clean), flags


def scrub_paths(value: Any) -> Any:
    """``value`` with every absolute path string replaced by ``LOCAL_PATH`` (nested dicts and lists too)."""
    if isinstance(value, dict):
        return {k: scrub_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_paths(v) for v in value]
    if isinstance(value, str) and PurePath(value).is_absolute():
        return "LOCAL_PATH"
    return value


def model_card(info: StudentInfo, parameters: int, repo_id: str | None = None) -> str:
    """The model card of the exported student described by ``info`` (``repo_id``: where it is pushed)."""
    recipe = info.recipe or {}
    summary = info.summary or {}
    method = (recipe.get("method") or {}).get("name") or summary.get("method")
    teacher = _teacher(recipe, summary)
    teacher_name = (recipe.get("teacher") or {}).get("name") or summary.get("teacher") if method != "vanilla" else None
    title = repo_id.split("/")[-1] if repo_id else summary.get("name") or info.architecture
    tags = ["image-classification", "timm", "ofakd", "knowledge-distillation"] + ([method] if method else [])
    front = yaml.safe_dump({"library_name": "timm", "pipeline_tag": "image-classification", "tags": tags},
                           sort_keys=False)
    rows = [
        ("student", f"`{info.architecture}`" + (f" {_kwargs(info.model_kwargs)}" if info.model_kwargs else "")
         + f", {parameters / 1e6:.2f} M parameters, {info.num_classes} classes"),
        ("teacher", teacher),
        ("method", _method(recipe, method)),
        ("data", _data(info, summary)),
        ("accuracy", _accuracy(info, summary)),
        ("weights", info.weights),
    ]
    c, h, w = info.preprocess.input_size
    load = f"hf-hub:{repo_id}" if repo_id else "local-dir:PATH/TO/THIS/FOLDER"
    lines = [
        f"---\n{front}---",
        f"# {title}",
        "",
        f"An image classifier made with ofakd: `{info.architecture}` learned "
        + (f"from the teacher `{teacher_name}` by `{method}`." if teacher_name else "from its labels alone."),
        "",
        "| | |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "## Use",
        "",
        "```python",
        "import timm",
        "",
        f'model = timm.create_model("{load}", pretrained=True).eval()',
        "transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))",
        "```",
        "",
        f"Input {c}x{h}x{w}, mean {list(info.preprocess.mean)}, std {list(info.preprocess.std)}, "
        f"{info.preprocess.interpolation} resize (crop {info.preprocess.crop_pct:g}, {info.preprocess.crop_mode}).",
        "",
        *_reproduce(recipe),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _teacher(recipe: dict, summary: dict) -> str:
    section = recipe.get("teacher") or {}
    name = section.get("name") or summary.get("teacher")
    if not name:
        return "none (trained on labels alone)"
    if section.get("pretrained") is True:
        weights = "pretrained weights from the Hugging Face Hub"
    elif section.get("checkpoint") or section.get("pretrained"):
        weights = "weights of its own"
    elif section.get("cache"):
        weights = "logits replayed from a teacher-output cache"
    else:
        weights = "as given"
    top1 = summary.get("teacher_top1")
    return f"`{name}` ({weights}" + (f"; top-1 {top1:.2f} % on the same validation split)" if top1 is not None else ")")


def _method(recipe: dict, method: str | None) -> str:
    """The method and the options the run set apart from the method's defaults."""
    options = {k: v for k, v in (recipe.get("method") or {}).items() if k != "name"}
    if not method:
        return "unknown"
    with contextlib.suppress(OfakdError):  # a method this ofakd does not know: show what the run recorded
        options = _differing(options, resolve_method(method).to_config())
    return f"`{method}`" + (f" {_kwargs(options)}" if options else "")


def _differing(options: dict, defaults: dict) -> dict:
    """``options`` less what equals ``defaults`` (nested mappings compared key by key)."""
    out = {}
    for key, value in options.items():
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            value = _differing(value, default)
            if value:
                out[key] = value
        elif value != default:
            out[key] = value
    return out


def _data(info: StudentInfo, summary: dict) -> str:
    name = info.data.name if info.data is not None else (summary.get("dataset") or "unknown")
    name = "data sets given in Python" if name == "python" else name
    counts = [f"{summary[k]} {what} images" for k, what in (("train_images", "train"), ("val_images", "val"))
              if summary.get(k) is not None]
    return name + (f" ({', '.join(counts)})" if counts else "")


def _accuracy(info: StudentInfo, summary: dict) -> str:
    if info.top1 is None:
        return "not recorded"
    where = [f"epoch {info.epoch}"] if info.epoch else []
    if info.ema:
        where.append("EMA")
    text = f"top-1 {info.top1:.2f} % on the validation split" + (f" ({', '.join(where)})" if where else "")
    top5 = summary.get("best_top5")
    return text + (f", top-5 {top5:.2f} %" if top5 is not None and info.top1 == summary.get("best_top1") else "")


def _reproduce(recipe: dict) -> list[str]:
    if not recipe:
        return []
    clean, flags = portable_recipe(recipe)
    method = (clean.get("method") or {}).get("name")
    if (clean.get("data") or {}).get("name") == "python":
        how = ["Trained from Python with `ofakd.fit(distiller, train_set, val_set, ...)`; its settings:"]
    else:
        command = "train" if method == "vanilla" else "distill"
        how = ["Save the recipe below as `config.yaml`, then:", "", "```bash",
               " ".join(["ofakd", command, "--config", "config.yaml", *flags]), "```"]
    return ["## How it was made", "", *how, "", "```yaml", dump_yaml(clean).rstrip(), "```"]


def _kwargs(values: dict) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in values.items()) + ")"
