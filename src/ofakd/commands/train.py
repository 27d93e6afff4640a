"""``ofakd train``: train one model on the labels alone (how you make a teacher, or a scratch baseline)."""

from __future__ import annotations

import argparse

from .cli_args import (
    HelpFormatter,
    add_field_flags,
    add_override,
    add_run_arguments,
    print_config,
    resolve_config,
)

NAME = "train"
HELP = "train a model on labels alone (make a teacher, or a from-scratch baseline)"
DESCRIPTION = """\
Train one timm model on the labels alone (cross-entropy; method 'vanilla', no teacher).
This is how you make a teacher for `ofakd distill`, or a from-scratch baseline.

Settings come from a recipe (--config NAME or a YAML path), then overrides in command-line
order: --set KEY=VALUE for any key (values are YAML), or one flag per field (--train.lr 0.1).
Hyphens and underscores are interchangeable (--train.batch-size 64); timm's train.py spellings
work where they mean the same (--model, --data-dir, --img-size, --lr, -b, --opt, --weight-decay,
--epochs, --amp, --model-ema, --output, ...); an abbreviated flag is an error, not a guess,
and a timm flag with no equivalent here says so.
The run folder (runs/NAME) gets config.yaml, metrics.jsonl, TensorBoard events, last.pt
(resume with --resume runs/NAME), best.safetensors and summary.json.

examples:
  ofakd train --config demo --model test_byobnet --set student.kwargs={} --name digits-teacher
  ofakd train --config cifar-vit-mlp --model swin_tiny_patch4_window7_224 \\
      --pretrained swin_tiny_in1k.safetensors --data.root ./data --epochs 50 --name swin-t-cifar100
  ofakd train --config fashion-mnist --model resnet18 --set train.epochs=5 --device cpu
  ofakd train --config imagenet-cnn --data imagefolder --data.root ./pets --model resnet50.a1_in1k --pretrained
  ofakd train --resume runs/digits-teacher
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    model = parser.add_argument_group("model")
    add_override(model, "--model", key="student.name", raw=True, metavar="NAME",
              help="timm model name to train, e.g. resnet18 (student.name); the recipe's student.kwargs "
                 "still apply: clear them with --set student.kwargs={} when they belong to another model")
    add_override(model, "--checkpoint", key="student.checkpoint", raw=True, metavar="PATH",
              help="start from these exact weights (student.checkpoint)")
    add_override(model, "--pretrained", key="student.pretrained", raw=True, nargs="?", const=True, metavar="PATH",
                 help="fine-tune from pretrained weights: alone, those of the tag or Hub repo in --model "
                 "(resnet50.a1_in1k, hf-hub:org/name) through the Hugging Face Hub cache; or a local file. The "
                 "classifier is re-initialised when classes differ")
    add_override(model, "--data", key="data.name", raw=True, metavar="NAME",
              help="data set: digits, fashion-mnist, cifar10, cifar100, imagefolder (data.name)")
    add_run_arguments(parser)
    add_field_flags(parser, ["data", "augment", "student", "train", "run"])


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, reset_sections=("teacher", "method"), forced=[("method", {"name": "vanilla"})])
    return run_config(cfg, args)


def run_config(cfg, args: argparse.Namespace) -> int:
    """Print the resolved config (``--print-config``) or run it: one process or one of torchrun's."""
    if args.print_config:
        print_config(cfg)
        return 0
    from ..engine import fit, run_folder_hint
    from ..engine.launch import distributed

    # one process, or one of torchrun's: the process group lives as long as the run
    with distributed(cfg.train.device, timeout_s=cfg.train.dist_timeout,
                     resume_hint=run_folder_hint(cfg, args.resume)) as dist:
        summary = fit(cfg, resume=args.resume, overwrite=args.overwrite, stop_after_epochs=args.stop_after_epochs,
                      dist=dist)
    if dist.is_main:
        _report(summary)
    return 0


def _report(summary: dict) -> None:
    if summary["best_top1"] is None:
        print(f"no epoch finished; run folder: {summary['name']}")
        return
    state = "done" if summary["complete"] else f"stopped after epoch {summary['epochs_done']}/{summary['epochs']}"
    print(
        f"{state}: best val top1 {summary['best_top1']:.2f} (epoch {summary['best_epoch']}, {summary['best_from']}), "
        f"final top1 {summary['final_top1']:.2f}, {summary['wall_time_s']:.0f}s"
    )
