"""``ofakd cache record|info``: record a teacher's logits once over a run's exact views; inspect a cache."""

from __future__ import annotations

import argparse
import json
import os

from ..config.load import list_recipes
from ..errors import ConfigError
from .cli_args import (
    RANDOM_TEACHER_HELP,
    HelpFormatter,
    TeacherRunAction,
    add_field_flags,
    add_override,
    add_switch,
    print_config,
    resolve_config,
)

NAME = "cache"
HELP = "teacher-output cache: record a teacher's logits once (record), inspect a cache (info)"
DESCRIPTION = """\
A teacher-output cache holds a teacher's logits for every training view a distillation run will
draw: the same sample order, crops, flips, RandAugment, random erasing and mixup/cutmix (partners
and λ), because every view is a function of (data seed, epoch, position) only. Record it once,
then distil any number of students and logit-only methods (ofa, kd, dkd, dist, ...) from it with
`ofakd distill --teacher-cache DIR`: the teacher is never built and the losses equal a live run's
up to the fp16 rounding of the logits.

actions:
  record   run the teacher over the views and store full fp16 logits or the top-k
  info     print a cache's manifest and its size per sample and per epoch
"""

RECORD_DESCRIPTION = """\
Run the teacher over exactly the views that `ofakd distill` with the same config (data, augment,
student input size/mean/std, batch size, data seed), world size and --epochs will draw, and store
per view the full logits (float16) or, with --topk K, the K largest (float16 + class indices + the
log-sum-exp of all logits; the rest of the probability mass is spread evenly on the other classes).

Recording is resumable: run the same command again after an interruption and it continues block
by block (an epoch of one rank); a larger --epochs extends a finished cache. Under torchrun each
process records its share of the ranks (one per GPU), into the same --out folder.

examples:
  ofakd cache record --config demo --teacher-run runs/digits-teacher --epochs 10 --out caches/digits
  ofakd cache record --config cifar-vit-mlp --data.root ./data --teacher convnext_tiny \\
      --teacher-checkpoint convnext_t_cifar100.pth --student deit_tiny_patch16_224 \\
      --epochs 300 --topk 20 --world-size 8 --out caches/convnext-cifar100
  ofakd distill --config demo --method kd --teacher-cache caches/digits
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION")
    record = actions.add_parser(
        "record",
        help="record a teacher's logits over a run's views",
        description=RECORD_DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    _record_arguments(record)
    info = actions.add_parser(
        "info",
        help="print a cache's manifest and its size per sample and epoch",
        description="Print a teacher cache's manifest, which epochs are recorded, "
        "and its size on disk per sample (view) and per epoch.",
        formatter_class=HelpFormatter,
    )
    info.add_argument("directory", metavar="DIR", help="the cache folder (--out of `ofakd cache record`)")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    info.add_argument("--verify", action="store_true",
                      help="read every recorded block and check it against its sha256 (a run checks each block "
                      "when it first reads it); a damaged file is an error (status 2) naming it")
    for sub in (record, info):
        sub.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks"
        )


def _record_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``ofakd cache record``. Over 60 lines on purpose: one flat declaration per flag, in
    the order ``--help`` shows them; splitting it would only scatter the list."""
    models = parser.add_argument_group("teacher, student, data")
    add_override(
        models, "--teacher", key="teacher.name", raw=True, metavar="NAME", help="timm name of the teacher"
    )
    add_override(
        models,
        "--teacher-checkpoint",
        key="teacher.checkpoint",
        raw=True,
        metavar="PATH",
        help="the teacher's weights, a local file (teacher.checkpoint)",
    )
    models.add_argument(
        "--teacher-run",
        action=TeacherRunAction,
        dest="overrides",
        default=argparse.SUPPRESS,
        metavar="RUN_DIR",
        help="use the model trained by `ofakd train` in RUN_DIR as the teacher",
    )
    add_switch(models, "--teacher-random-init", key="teacher.random_init", help=RANDOM_TEACHER_HELP)
    add_override(
        models,
        "--student",
        key="student.name",
        raw=True,
        metavar="NAME",
        help="timm name of a student: the views are prepared for its input size, mean and std "
        "(or set student.input_size, student.mean and student.std)",
    )
    add_override(models, "--data", key="data.name", raw=True, metavar="NAME", help="data set (data.name)")
    recipe = parser.add_argument_group("recipe and overrides")
    recipe.add_argument(
        "-c",
        "--config",
        metavar="RECIPE",
        help=f"shipped recipe ({', '.join(list_recipes())}) or a YAML path",
    )
    add_override(recipe, "--set", key=None, metavar="KEY=VALUE", help="override any config key (YAML value)")
    recipe.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )
    add_override(recipe, "--epochs", key="train.epochs", metavar="N", help="epochs to record (train.epochs)")
    add_override(
        recipe, "--seed", key="train.seed", metavar="N", help="seed (the data seed unless train.data_seed)"
    )
    add_override(
        recipe, "--device", key="train.device", raw=True, metavar="DEVICE", help="cpu, cuda, cuda:1, ..."
    )
    cache = parser.add_argument_group("cache")
    cache.add_argument(
        "--out", required=True, metavar="DIR", help="cache folder (created; resumed when it holds one)"
    )
    cache.add_argument("--topk", type=int, metavar="K", help="store the top K logits per view instead of all")
    cache.add_argument(
        "--world-size",
        type=int,
        metavar="N",
        help="number of processes of the distillation runs (default: torchrun's, else 1)",
    )
    cache.add_argument(
        "--overwrite", action="store_true", help="delete a cache already in --out and record afresh"
    )
    add_field_flags(parser, ["data", "augment", "teacher", "student", "train"])


def run(args: argparse.Namespace) -> int:
    if args.cache_action == "record":
        return _record(args)
    if args.cache_action == "info":
        return _info(args)
    raise ConfigError("ofakd cache needs an action: record or info (see `ofakd cache --help`)")


def _record(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print_config(cfg)
        return 0
    procs, proc_rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    world_size = args.world_size if args.world_size is not None else procs
    if procs > 1 and args.overwrite:
        raise ConfigError(
            "--overwrite under torchrun would let processes delete each other's work; "
            "delete the folder first, or record from one process"
        )
    device = None
    if procs > 1 and cfg.train.device == "auto":
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    from ..cache.record import record_cache

    cache = record_cache(
        cfg,
        args.out,
        topk=args.topk,
        world_size=world_size,
        ranks=range(proc_rank, world_size, procs),
        overwrite=args.overwrite,
        device=device,
    )
    done = cache.completed_epochs()
    print(f"{args.out}: {len(done)}/{cache.epochs} epochs recorded ({_size(cache.sizes()['bytes_on_disk'])})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..cache import TeacherCache

    cache = TeacherCache(args.directory)
    sizes = cache.sizes()
    done = cache.completed_epochs()
    if args.verify:
        cache.verify(done, hashes=True)
    partial = sorted(
        {
            (e, r)
            for e in range(cache.epochs)
            for r in range(cache.world_size)
            if cache.is_done(e, r) and e not in done
        }
    )
    damaged = [e for e in done if cache.layout.size_problem(e) is not None]
    if args.json:
        print(
            json.dumps(
                {
                    "manifest": cache.manifest,
                    "sizes": sizes,
                    "completed_epochs": done,
                    "damaged_epochs": damaged,
                },
                indent=2,
            )
        )
        return 0
    m = cache.manifest
    print(f"teacher cache {cache.directory}")
    print(json.dumps(m, indent=2))
    what = (
        "full fp16 logits"
        if cache.storage == "full"
        else f"top-{cache.k} fp16 logits + int32 classes + fp32 lse"
    )
    print(f"storage: {what}, {cache.num_classes} classes")
    print(
        f"per sample (view): {sizes['bytes_per_view']} bytes (with its int32 dataset index and fp32 view check)"
    )
    print(
        f"per epoch: {_size(sizes['bytes_per_epoch'])} ({sizes['views_per_epoch']} views = {cache.world_size} rank(s) "
        f"x {cache.steps_per_epoch} steps x {cache.batch_size})"
    )
    print(
        f"all {cache.epochs} epochs: {_size(sizes['bytes_total'])}; on disk now: {_size(sizes['bytes_on_disk'])}"
    )
    status = f"recorded: {len(done)}/{cache.epochs} epochs complete"
    if partial:
        status += f"; partly recorded: epoch(s) {', '.join(str(e) for e in sorted({e for e, _ in partial}))}"
    print(status)
    if args.verify:
        print(f"verified: the {len(done)} complete epoch(s) match the sha256 recorded with them")
    for epoch in damaged:
        print(f"damaged: {cache.layout.size_problem(epoch)}")
    return 0 if not damaged else 1


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
