"""``ofakd eval``: top-1 / top-5 of a checkpoint (or a run's best weights) on a data split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config.cli_args import HelpFormatter, add_field_flags, add_override
from ..config.load import apply_override, list_recipes, read_recipe, validate
from ..errors import ConfigError

NAME = "eval"
HELP = "top-1 / top-5 accuracy of a checkpoint or run on a data split"
DESCRIPTION = """\
Evaluate a model: the best weights of a run folder (TARGET = runs/NAME; its config.yaml gives
the model and data), a best.safetensors written by ofakd (its metadata gives the model and data),
or any local weights file together with --model and the data options. Prints top-1, top-5 and
the cross-entropy. --split train evaluates the training images with the validation transform.

examples:
  ofakd eval runs/ofa-test_resnet-vit_tiny_patch16_224-digits-s42
  ofakd eval runs/my-run/best.safetensors --split train --json
  ofakd eval resnet18_cifar100.pth --model resnet18 --config cifar-cnn --data.root ./data
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.add_argument("target", metavar="TARGET", help="a run folder, a best.safetensors, or a weights file (with --model)")
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
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_field_flags(parser, ["data", "augment", "student"])


def run(args: argparse.Namespace) -> int:
    from ..engine.evaluator import evaluate_target

    target = Path(args.target)
    raw, weights = _config_and_weights(target, args)
    for key, value in getattr(args, "overrides", None) or []:
        apply_override(raw, key, value)
    raw.setdefault("student", {}).update(checkpoint=str(weights), pretrained=None)
    raw["method"] = {"name": "vanilla"}
    raw.pop("teacher", None)
    cfg = validate(raw)
    from ..engine.launch import distributed

    with distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout) as dist:  # under torchrun: a share each
        result = evaluate_target(cfg, split=args.split, last_pt=weights.suffix == ".pt" and args.weights == "last",
                                 dist=dist)
    if not dist.is_main:
        return 0
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['model']} on {result['dataset']} {result['split']} ({result['count']} images): "
            f"top-1 {result['top1']:.2f}  top-5 {result['top5']:.2f}  loss {result['loss']:.4f}"
        )
    return 0


def _config_and_weights(target: Path, args) -> tuple[dict, Path]:
    if target.is_dir():
        config = target / "config.yaml"
        if not config.is_file():
            raise ConfigError(f"{target} has no config.yaml; pass a run folder (runs/NAME) or a weights file")
        weights = target / ("best.safetensors" if args.weights == "best" else "last.pt")
        if not weights.is_file():
            raise ConfigError(f"{target} has no {weights.name} yet (no epoch finished)")
        return read_recipe(str(config)), weights
    if not target.is_file():
        raise ConfigError(f"{target} does not exist; pass a run folder or a weights file")
    raw = read_recipe(args.config) if args.config else {}
    if target.suffix == ".safetensors":
        from ..engine.checkpoint import read_weights_metadata

        meta = read_weights_metadata(target)
        if "ofakd_model" in meta:
            student = raw.setdefault("student", {})
            student.update(name=meta["ofakd_model"], kwargs=meta.get("ofakd_kwargs") or {},
                           input_size=meta.get("ofakd_input_size"), mean=meta.get("ofakd_mean"), std=meta.get("ofakd_std"))
            if "ofakd_data" in meta and not args.config:
                raw["data"] = meta["ofakd_data"]
    return raw, target
