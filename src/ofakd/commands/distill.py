"""``ofakd distill``: distil a teacher into a student of any family with OFA-KD or a baseline."""

from __future__ import annotations

import argparse

from .cli_args import (
    RANDOM_TEACHER_HELP,
    HelpFormatter,
    TeacherRunAction,
    add_field_flags,
    add_override,
    add_run_arguments,
    add_switch,
    add_timm_distillation_aliases,
    resolve_config,
)
from .train import run_config

NAME = "distill"
HELP = "distil a teacher into a student (OFA-KD or a baseline method)"
DESCRIPTION = """\
Distil a teacher into a student of any architecture family with OFA-KD (--method ofa) or a
baseline (vanilla, kd, ...: see `ofakd methods`). The teacher comes from a timm name plus a local
checkpoint (--teacher NAME --teacher-checkpoint PATH), from a pretrained tag or Hugging Face Hub
repo (--teacher resnet50.a1_in1k --teacher-pretrained, --teacher hf-hub:org/name --teacher-pretrained:
through the Hub cache, HF_HOME and HF_HUB_OFFLINE as usual) or from a run of `ofakd train`
(--teacher-run runs/NAME). A teacher without weights is an error unless --teacher-random-init says
it is meant. The teacher sees the student's batch re-normalised and resized to its own mean, std
and input size when they differ.

Settings come from a recipe (--config NAME or a YAML path), then overrides in command-line
order: --set KEY=VALUE for any key (values are YAML), or one flag per field
(--train.lr 0.1, --method.eps [1.5], --method.ofa_weight 0.1).
Hyphens and underscores are interchangeable (--train.batch-size 64); timm's train.py spellings
work where they mean the same (--model, --data-dir, --img-size, --lr, -b, --opt, --weight-decay,
--epochs, --amp, --model-ema, --output, ..., and its distillation flags
--kd-model-name, --kd-distill-type logit, --kd-temperature, --distill-loss-weight,
--task-loss-weight); an abbreviated flag is an error, not a guess,
and a timm flag with no equivalent here says so.

examples:
  ofakd distill --config demo --teacher-run runs/digits-teacher --method ofa
  ofakd distill --config imagenet-cnn --data.root /data/imagenet --teacher hf-hub:timm/deit_tiny_patch16_224.fb_in1k \
      --teacher-pretrained --student resnet18 --method.eps [1.5]
  ofakd distill --config cifar-cnn --data.root ./data \\
      --teacher swin_tiny_patch4_window7_224 --teacher-checkpoint swin_t_cifar100.pth \\
      --student resnet18 --method ofa --method.eps [1.0] --method.ofa_weight 0.1 \\
      --train.lr 0.1 --train.weight_decay 5e-4
  ofakd distill --config imagenet-cnn --data.root /data/imagenet --teacher deit_tiny_patch16_224 \\
      --teacher-checkpoint deit_tiny.pth --student resnet18 --method.eps [1.5]
  ofakd cache record --config demo --teacher-run runs/digits-teacher --epochs 10 --out caches/digits
  ofakd distill --config demo --method kd --teacher-cache caches/digits
  ofakd distill --resume runs/ofa-swin_tiny_patch4_window7_224-resnet18-cifar100-s42
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    models = parser.add_argument_group("teacher, student, method")
    add_override(models, "--teacher", key="teacher.name", raw=True, metavar="NAME", help="timm name of the teacher (teacher.name)")
    add_override(models, "--teacher-checkpoint", key="teacher.checkpoint", raw=True, metavar="PATH",
              help="the teacher's weights, a local file (teacher.checkpoint)")
    add_override(models, "--teacher-pretrained", key="teacher.pretrained", raw=True, nargs="?", const=True,
                 metavar="PATH", help="the teacher's pretrained weights: alone, those of the tag or Hub repo in "
                 "--teacher (resnet50.a1_in1k, hf-hub:org/name) through the Hugging Face Hub cache; or a local "
                 "file (teacher.pretrained)")
    add_override(models, "--student-pretrained", key="student.pretrained", raw=True, nargs="?", const=True,
                 metavar="PATH", help="start the student from pretrained weights, as --teacher-pretrained "
                 "(student.pretrained)")
    models.add_argument("--teacher-run", action=TeacherRunAction, dest="overrides", default=argparse.SUPPRESS,
                        metavar="RUN_DIR", help="use the model trained by `ofakd train` in RUN_DIR as the teacher "
                        "(its name, kwargs, input size, mean/std and best.safetensors)")
    add_override(models, "--teacher-cache", key="teacher.cache", raw=True, metavar="DIR",
              help="distil from the teacher logits recorded by `ofakd cache record` in DIR; the teacher is never "
              "built (teacher.cache)")
    add_switch(models, "--teacher-cache-cycle", key="teacher.cache_cycle",
               help="train past the cache's recorded epochs by replaying them (teacher.cache_cycle)")
    add_switch(models, "--teacher-random-init", key="teacher.random_init", help=RANDOM_TEACHER_HELP)
    add_override(models, "--student", key="student.name", raw=True, metavar="NAME", help="timm name of the student (student.name)")
    add_override(models, "--method", key="method.name", raw=True, metavar="NAME",
              help="distillation method: ofa, kd, vanilla, ... (method.name)")
    add_override(models, "--data", key="data.name", raw=True, metavar="NAME",
              help="data set: digits, fashion-mnist, cifar10, cifar100, imagefolder (data.name)")
    add_run_arguments(parser)
    add_timm_distillation_aliases(parser)
    add_field_flags(parser, ["data", "augment", "teacher", "student", "train", "run"], method_options=True)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    return run_config(cfg, args)
