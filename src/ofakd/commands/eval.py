"""``ofakd eval``: top-1 / top-5 of a checkpoint (or a run's best weights) on a data split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .. import finite_json
from ..config.load import apply_override, list_recipes, read_recipe, validate
from ..errors import ConfigError
from ..run_folder import EXPORT_CONFIG
from .cli_args import HelpFormatter, add_field_flags, add_override

if TYPE_CHECKING:
    from ..evaluation import EvalResult

NAME = "eval"
HELP = "top-1 / top-5 / per-class accuracy, loss and images/s of a run, checkpoint or exported model"
DESCRIPTION = """\
Evaluate a model: the best weights of a run folder (TARGET = runs/NAME; its config.yaml gives
the model and data), a best.safetensors written by ofakd (its metadata gives the model and data),
a folder written by `ofakd export --format timm`, a model.onnx or model.torchscript.pt written by
`--format onnx`/`torchscript` (run by onnxruntime, the export extra, or torch.jit; the data its run
used, or --data/--data.root), or any local weights file together with --model and the data options. Prints top-1, top-5, per-class top-1, the mean
cross-entropy and images/s (the model alone, data loading excluded). --split train evaluates the
training images with a plain resize. An export is evaluated on the whole split (--data.val_subset N
for fewer images); a run folder on the split its run evaluated (a note says when that is a subset).

examples:
  ofakd eval runs/ofa-test_byobnet-vit_tiny_patch16_224-digits-s42
  ofakd eval runs/my-run/best.safetensors --split train --json
  ofakd eval export/my-run --data.name digits
  ofakd eval export/my-run/model.onnx
  ofakd eval resnet18_cifar100.pth --model resnet18 --config cifar-cnn --data.root ./data
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.add_argument("target", metavar="TARGET", help="a run folder, a best.safetensors, an export (timm folder, model.onnx, model.torchscript.pt), or a "
                        "weights file (with --model)")
    parser.add_argument("--split", choices=("val", "train"), default="val", help="which split to evaluate")
    parser.add_argument("--weights", choices=("best", "last"), default="best",
                        help="for a run folder: best.safetensors, or the student in last.pt")
    parser.add_argument("-c", "--config", metavar="RECIPE",
                        help=f"recipe for the data/model settings when TARGET is a bare weights file ({', '.join(list_recipes())} or a YAML path)")
    add_override(parser, "--model", key="student.name", raw=True, metavar="NAME", help="timm model name of the weights (student.name)")
    add_override(parser, "--set", key=None, metavar="KEY=VALUE",
                 help="override any config key (YAML value), e.g. --set data.root=./data (repeatable)")
    add_override(parser, "--device", key="train.device", raw=True, metavar="DEVICE", help="cpu, cuda, mps (default: auto)")
    add_override(parser, "--batch-size", key="train.batch_size", metavar="N", help="images per batch (default: the run's)")
    parser.add_argument("--max-classes", type=int, default=100, metavar="N",
                        help="per-class lines to print (the N worst classes when there are more)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_field_flags(parser, ["data", "augment", "student"])


def run(args: argparse.Namespace) -> int:
    from ..engine.launch import distributed
    from ..evaluation import evaluate_target

    target = Path(args.target)
    if _is_export(target):
        return _run_export(target, args)
    raw, weights = _config_and_weights(target, args)
    for key, value in getattr(args, "overrides", None) or []:
        apply_override(raw, key, value)
    raw.setdefault("student", {}).update(checkpoint=str(weights), pretrained=None)
    raw["method"] = {"name": "vanilla"}
    raw.pop("teacher", None)
    cfg = validate(raw)
    with distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout) as dist:  # under torchrun: a share each
        result, names = evaluate_target(cfg, split=args.split, dist=dist,
                                        last_pt=weights.suffix == ".pt" and args.weights == "last")
    subset = cfg.data.val_subset if args.split == "val" else cfg.data.train_subset
    if subset is not None and dist.is_main:  # (once the weights and data were read: an error stays one line)
        print(f"note: evaluated the run's {subset}-image {args.split} subset (data.{args.split}_subset); "
              f"--data.{args.split}_subset null for the whole split", file=sys.stderr)
    if dist.is_main:
        _print(result, names, args, model=cfg.student.name, dataset=cfg.data.name,
               title=f"{cfg.student.name} on {cfg.data.name} {args.split}")
    return 0


def _is_export(target: Path) -> bool:
    """An exported model: a ``model.onnx`` or ``model.torchscript.pt``, or a folder ``ofakd export`` wrote
    (config.json, no config.yaml)."""
    from ..export.run_loading import EXPORTED_FILES
    from ..run_folder import RunRecord

    if target.is_file():
        return target.name in EXPORTED_FILES
    return target.is_dir() and (target / EXPORT_CONFIG).is_file() and not RunRecord.at(target).has_config


def _run_export(target: Path, args) -> int:
    """A model exported with ``ofakd export``: a timm folder (plain timm loads it) or an ``.onnx`` file
    (onnxruntime runs it), prepared as its config.json says; data from the flags, else the run's."""
    from ..device import pick_device
    from ..evaluation import eval_loader, evaluate, load_student, resolve_data, warn_nonfinite

    overrides = list(getattr(args, "overrides", None) or [])
    settings = dict(overrides)
    model, info = load_student(target)
    warn_nonfinite(model, target)
    # the whole split: the subsets the model's run trained and validated on are not inherited
    whole = [("data.val_subset", None), ("data.train_subset", None)] if info.data is not None else []
    data = resolve_data(info, whole + overrides)
    loader, names = eval_loader(info, data, batch_size=int(settings.get("train.batch_size", 128)), split=args.split)
    result = evaluate(model, loader, info.num_classes, pick_device(str(settings.get("train.device", "auto"))))
    _print(result, names, args, model=info.architecture, dataset=data.name,
           title=f"{info.architecture} (export {target}) on {data.name} {args.split}")
    return 0


def _print(result: EvalResult, class_names: list[str], args, *, model: str, dataset: str, title: str) -> None:
    """The result as one JSON object (``--json``; ``loss`` repeats ``mean_loss``) or as text under ``title``."""
    if args.json:
        print(finite_json.dumps({**result.to_dict(class_names), "loss": result.mean_loss, "model": model,
                                 "dataset": dataset, "split": args.split}))  # a NaN loss: null
        return
    print(title)
    print(result.format(class_names, max_classes=args.max_classes))


def _config_and_weights(target: Path, args) -> tuple[dict, Path]:
    if target.is_dir():
        from ..run_folder import RunRecord

        run = RunRecord.at(target)
        if not run.has_config:
            raise ConfigError(f"{target} has no config.yaml; pass a run folder (runs/NAME) or a weights file")
        weights = run.folder.best if args.weights == "best" else run.folder.last
        if not weights.is_file():
            raise ConfigError(f"{target} has no {weights.name} yet (no epoch finished)")
        return run.checked_config(), weights
    if not target.is_file():
        raise ConfigError(f"{target} does not exist; pass a run folder or a weights file")
    raw = read_recipe(args.config) if args.config else {}
    if target.suffix == ".safetensors":
        from ..run_folder import read_student_metadata

        meta = read_student_metadata(target)
        if meta.model is not None:
            student = raw.setdefault("student", {})
            student.update(name=meta.model, kwargs=meta.kwargs, input_size=meta.input_size, mean=meta.mean,
                           std=meta.std)
            if meta.data is not None and not args.config:
                raw["data"] = meta.data
    return raw, target
