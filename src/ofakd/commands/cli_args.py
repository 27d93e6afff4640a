"""Command-line options shared by ``train``, ``distill`` and ``eval``: recipe, overrides, dotted flags.

Every config field has a dotted flag (``--train.lr 0.1``, ``--data.root ./data``,
``--method.eps [1.5]``) and ``--set KEY=VALUE`` reaches any key, nested ones included
(``--set student.kwargs.img_size=32``). Values are read as YAML. They apply in command-line
order, after the recipe. timm's common spellings are aliases (``--lr``, ``-b``, ``--opt``, ...,
see :data:`TIMM_ALIASES`); hyphens and underscores are interchangeable in every flag
(``--train.batch-size``); an abbreviated flag is an error, never a guess.
"""

from __future__ import annotations

import argparse
import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config.load import (
    apply_override,
    dump_config,
    list_recipes,
    parse_value,
    read_recipe,
    split_override,
    validate,
)
from ..config.schema import RESUME_SAFE_KEYS, SECTIONS, RunConfig, resume_changes
from ..errors import ConfigError
from ..suggest import nearest


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's examples as written and shows defaults (but not None/False ones)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _Override(argparse.Action):
    """Append ``(key, value)`` to ``namespace.overrides`` in command-line order."""

    def __init__(self, option_strings, dest, key=None, raw=False, **kwargs):
        self.key, self.raw = key, raw
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        pending = list(getattr(namespace, "overrides", None) or [])
        if self.key is None:  # --set KEY=VALUE
            try:
                pending.append(split_override(values))
            except ConfigError as err:
                parser.error(str(err))
        else:
            pending.append((self.key, values if self.raw else parse_value(values)))
        namespace.overrides = pending


def add_override(group, *flags: str, key: str | None, raw: bool = False, **kwargs) -> None:
    """A flag that queues ``key=value`` (YAML-parsed unless ``raw``); ``key=None`` makes a ``--set KEY=VALUE`` flag."""
    group.add_argument(*flags, action=_Override, key=key, raw=raw, dest="overrides", default=argparse.SUPPRESS, **kwargs)


@dataclass(frozen=True)
class Fallback:
    """An override value that applies after every other override, and only where the key is still unset (null)
    and none of the ``unless`` keys is set: ``--model-ema`` turns the EMA on with timm's decay but keeps a decay
    the recipe or any flag chose; ``--kd-model-name`` loads pretrained weights unless a checkpoint is given."""

    default: Any
    unless: tuple[str, ...] = ()

    def applies(self, raw: dict[str, Any], key: str) -> bool:
        return all(_lookup(raw, k) is None for k in (key, *self.unless))


@dataclass(frozen=True)
class SquareSize:
    """timm's ``--img-size N`` for the model section ``key`` names: its input (C, N, N), C the channels set so far
    (``input_size`` or the ``in_chans`` kwarg), else 3 as in timm."""

    size: int

    def apply(self, raw: dict[str, Any], key: str) -> None:
        given = _lookup(raw, f"{key}.input_size")
        channels = given[0] if given else _lookup(raw, f"{key}.kwargs.in_chans") or 3
        apply_override(raw, f"{key}.input_size", [int(channels), self.size, self.size])


@dataclass(frozen=True)
class InputChannels:
    """timm's ``--in-chans C`` for the model section ``key`` names: the channels of its ``input_size`` when one is
    set, else its ``in_chans`` kwarg (the size then comes from the model)."""

    channels: int

    def apply(self, raw: dict[str, Any], key: str) -> None:
        given = _lookup(raw, f"{key}.input_size")
        if given:
            apply_override(raw, f"{key}.input_size", [self.channels, *list(given)[1:]])
        else:
            apply_override(raw, f"{key}.kwargs.in_chans", self.channels)


class _Fallback(_Override):
    """Queue ``(key, Fallback(const))``; the flag takes no value."""

    def __init__(self, option_strings, dest, key=None, const=None, **kwargs):
        super().__init__(option_strings, dest, key=key, nargs=0, const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), (self.key, Fallback(self.const))]


class _Queue(argparse.Action):
    """A flag that queues the overrides ``to_overrides(value)`` returns, in command-line order (one timm flag
    that sets several keys, or a value that needs translating)."""

    def __init__(self, option_strings, dest, to_overrides=None, **kwargs):
        self.to_overrides = to_overrides
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            queued = self.to_overrides(values)
        except ConfigError as err:
            parser.error(f"argument {option_string}: {err}")
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), *queued]


def add_queue(group, *flags: str, to_overrides, **kwargs) -> None:
    """A flag whose value becomes the overrides ``to_overrides(value)`` returns."""
    group.add_argument(*flags, action=_Queue, to_overrides=to_overrides, dest="overrides", default=argparse.SUPPRESS,
                       **kwargs)


RANDOM_TEACHER_HELP = ("distil from a randomly initialised teacher on purpose (tests, timings); without it a teacher "
                       "with no weights is an error (teacher.random_init)")


class _AmpSwitch(argparse.Action):
    """timm's ``--amp``: mixed precision with timm's default dtype (float16), unless ``--amp-dtype`` said."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if not getattr(namespace, "amp_dtype", None):
            namespace.overrides = [*(getattr(namespace, "overrides", None) or []), ("train.amp", "fp16")]


class _AmpDtype(argparse.Action):
    """timm's ``--amp-dtype float16|bfloat16``: ``train.amp`` fp16 or bf16."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.amp_dtype = values
        mode = {"float16": "fp16", "bfloat16": "bf16"}[values]
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), ("train.amp", mode)]


class _SetTrue(argparse.Action):
    """A switch that queues ``key=true`` in command-line order (``--compile`` -> ``train.compile=true``)."""

    def __init__(self, option_strings, dest, key=None, **kwargs):
        self.key = key
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), (self.key, True)]


def add_switch(group, *flags: str, key: str, **kwargs) -> None:
    """A flag without a value that sets the boolean config ``key`` to true."""
    group.add_argument(*flags, action=_SetTrue, key=key, dest="overrides", default=argparse.SUPPRESS, **kwargs)


def add_run_arguments(parser: argparse.ArgumentParser, *, recipe_default: str | None = None) -> None:
    """Recipe, overrides, run folder, resume and device options."""
    recipes = ", ".join(list_recipes())
    group = parser.add_argument_group("recipe and overrides")
    group.add_argument(
        "-c", "--config", metavar="RECIPE", default=recipe_default,
        help=f"shipped recipe name ({recipes}) or path to a YAML recipe (which may 'base:' another)",
    )
    add_override(
        group, "--set", key=None, metavar="KEY=VALUE",
        help="override any config key, nested ones too; value is YAML (repeatable): "
        "--set train.lr=0.1 --set method.eps=[1.5] --set student.kwargs.img_size=32",
    )
    group.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    run = parser.add_argument_group("run folder")
    add_override(run, "--name", "--experiment", key="run.name", raw=True, metavar="NAME",
              help="run folder name under --out-dir (default: method-teacher-student-data-sSEED)")
    add_override(run, "--out-dir", "--output", key="run.out_dir", raw=True, metavar="DIR",
                 help="folder holding run folders (default: runs)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly from its last.pt "
                     f"(its config.yaml is used; only {', '.join(RESUME_SAFE_KEYS)} may be overridden, and "
                     "--epochs N to train a finished run on: its lr schedule is re-planned over N epochs)")
    run.add_argument("--overwrite", action="store_true", help="replace an existing run folder of the same name")
    run.add_argument("--stop-after-epochs", type=int, metavar="N",
                     help="stop after N epochs in total (last.pt stays resumable), e.g. to split a run into jobs")
    add_override(run, "--checkpoint-every", key="train.checkpoint_every", metavar="N",
                 help="also save last.pt every N steps, so a SIGKILL loses at most N steps (SIGTERM/SIGINT always "
                 "save a recovery checkpoint and exit 75; resume with --resume)")
    add_override(run, "--device", key="train.device", raw=True, metavar="DEVICE",
              help="force a device: cpu, cuda, cuda:1, mps (default: auto)")
    add_override(run, "--seed", key="train.seed", metavar="N", help="model-initialisation seed (and data seed unless train.data_seed is set)")
    add_override(run, "--epochs", key="train.epochs", metavar="N", help="number of epochs (train.epochs)")
    speed = parser.add_argument_group(
        "speed and several processes (start with torchrun --nproc_per_node=N -m ofakd ... for several GPUs/nodes)")
    add_switch(speed, "--compile", key="train.compile", help="torch.compile the training forward (train.compile)")
    add_switch(speed, "--channels-last", key="train.channels_last",
               help="channels-last images and weights, faster convolutions on GPUs (train.channels_last)")
    add_switch(speed, "--sync-bn", key="train.sync_bn",
               help="BatchNorm statistics over the global batch on several GPUs (train.sync_bn)")
    add_timm_aliases(parser)


TIMM_ALIASES: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("--lr",), "train.lr", {}),
    (("-b", "--batch-size"), "train.batch_size", {}),
    (("--opt",), "train.optimizer", {}),
    (("--weight-decay",), "train.weight_decay", {}),
    (("--momentum",), "train.momentum", {}),
    (("--sched",), "train.scheduler", {}),
    (("--min-lr",), "train.min_lr", {}),
    (("--warmup-epochs",), "train.warmup_epochs", {}),
    (("--warmup-lr",), "train.warmup_lr", {}),
    (("--decay-epochs",), "train.decay_epochs", {}),
    (("--decay-rate",), "train.decay_rate", {}),
    (("--clip-grad",), "train.clip_grad", {}),
    (("--model-ema-decay",), "train.ema_decay", {}),
    (("--log-interval",), "train.log_every", {}),
    (("--smoothing",), "augment.smoothing", {}),
    (("--mixup",), "augment.mixup", {}),
    (("--cutmix",), "augment.cutmix", {}),
    (("--mixup-prob",), "augment.mixup_prob", {}),
    (("--mixup-switch-prob",), "augment.mixup_switch_prob", {}),
    (("--hflip",), "augment.hflip", {}),
    (("--color-jitter",), "augment.color_jitter", {}),
    (("--aa",), "augment.auto_augment", {}),
    (("--reprob",), "augment.reprob", {}),
    (("--scale",), "augment.scale", {"nargs": 2, "type": float, "metavar": ("MIN", "MAX")}),
    (("--ratio",), "augment.ratio", {"nargs": 2, "type": float, "metavar": ("MIN", "MAX")}),
    (("--aug-repeats",), "augment.repeated_aug", {"type": int}),
    (("--crop-pct",), "augment.crop_pct", {}),
    (("-j", "--workers"), "data.workers", {}),
    (("--data-dir",), "data.root", {}),
    (("--model",), "student.name", {}),
    (("--pretrained",), "student.pretrained", {"nargs": "?", "const": True, "metavar": "PATH"}),
    (("--pretrained-path",), "student.pretrained", {"metavar": "PATH", "raw": True}),
    (("--initial-checkpoint",), "student.checkpoint", {"metavar": "PATH"}),
    (("--input-size",), "student.input_size", {"nargs": 3, "type": int, "metavar": ("C", "H", "W")}),
    (("--mean",), "student.mean", {"nargs": "+", "type": float}),
    (("--std",), "student.std", {"nargs": "+", "type": float}),
    (("--drop",), "student.kwargs.drop_rate", {"type": float}),
    (("--drop-path",), "student.kwargs.drop_path_rate", {"type": float}),
]
"""timm's train.py flags whose meaning is the same here: (flags, config key, argparse options). Also timm's:
``--epochs``, ``--seed``, ``--device``, ``--output`` (``run.out_dir``), ``--experiment`` (``run.name``),
``--channels-last``, ``--sync-bn``, ``--model-ema``, ``--amp``, ``--amp-dtype``, ``--sched-on-updates`` and
``--img-size``, ``--in-chans`` (see :func:`add_timm_aliases`); ``--num-classes N`` is checked against the data set's classes
(the classifier is sized from them).
timm's distillation flags: :data:`TIMM_DISTILLATION_ALIASES`."""

TIMM_EMA_DECAY = 0.9998
"""timm's default ``--model-ema-decay``."""


def add_timm_aliases(parser: argparse.ArgumentParser) -> None:
    """timm's spellings of common options (:data:`TIMM_ALIASES`), each queueing its config key; a flag the command
    already has (``ofakd train --model``, with help of its own) is left to it."""
    group = parser.add_argument_group("timm's spellings (aliases of the config keys named)")
    for flags, key, options in TIMM_ALIASES:
        if any(flag in parser._option_string_actions for flag in flags):
            continue
        options = {"metavar": "V", **options}
        raw = options.pop("raw", "type" in options or options.get("const") is True or _is_str(_annotation(key)))
        add_override(group, *flags, key=key, raw=raw, **options, help=key)
    add_queue(group, "--img-size", to_overrides=lambda n: [("student", SquareSize(n))], type=int,
              metavar="N", help="student.input_size [C, N, N] (C: the channels set so far, else 3)")
    add_queue(group, "--in-chans", to_overrides=lambda c: [("student", InputChannels(c))], type=int, metavar="C",
              help="the channels of student.input_size when set, else student.kwargs.in_chans")
    add_queue(group, "--dataset", to_overrides=_timm_dataset, metavar="NAME",
              help="data.name, timm's spelling: '' or imagefolder, torch/cifar10, torch/cifar100")
    group.add_argument("--num-classes", type=int, metavar="N", default=None,
                       help="the classes the data set must have (the classifier is sized from the data set)")
    add_switch(group, "--sched-on-updates", key="train.sched_on_updates", help="train.sched_on_updates")
    group.add_argument("--model-ema", action=_Fallback, key="train.ema_decay", const=TIMM_EMA_DECAY,
                       dest="overrides", default=argparse.SUPPRESS,
                       help=f"keep an EMA of the student (train.ema_decay: the recipe's, else {TIMM_EMA_DECAY})")
    group.add_argument("--amp", action=_AmpSwitch, dest="overrides", default=argparse.SUPPRESS,
                       help="mixed precision, float16 as in timm (train.amp fp16, a CUDA GPU); "
                       "--amp-dtype bfloat16 for bf16 (also on CPU)")
    group.add_argument("--amp-dtype", action=_AmpDtype, choices=("float16", "bfloat16"), default=argparse.SUPPRESS,
                       help="train.amp fp16 or bf16")


TIMM_DATASETS = {"": "imagefolder", "imagefolder": "imagefolder", "folder": "imagefolder",
                 "torch/cifar10": "cifar10", "torch/cifar100": "cifar100"}
"""timm's ``--dataset`` names of the data sets ofakd reads (an empty name is timm's ImageFolder)."""


def _timm_dataset(value: str) -> list[tuple[str, Any]]:
    if value.lower() not in TIMM_DATASETS:
        raise ConfigError(
            f"timm data set {value!r} is not one ofakd reads; pass --data digits, fashion-mnist, cifar10, cifar100 "
            "or imagefolder (--data-dir ROOT with ROOT/train/<class>/*, ROOT/val/<class>/*)"
        )
    return [("data.name", TIMM_DATASETS[value.lower()])]


TIMM_WITHOUT_EQUIVALENT = frozenset((
    "--train-split", "--val-split", "--train-num-samples", "--val-num-samples", "--dataset-download", "--class-map",
    "--input-img-mode", "--input-key", "--target-key", "--dataset-trust-remote-code", "--no-resume-opt", "--gp",
    "-vb", "--validation-batch-size", "--fuser", "--grad-accum-steps",
    "--grad-checkpointing", "--fast-norm", "--model-kwargs", "--head-init-scale", "--head-init-bias",
    "--torchcompile-mode", "--torchscript", "--torchcompile", "--model-dtype", "--no-ddp-bb", "--synchronize-step",
    "--local_rank", "--device-modules", "--opt-eps", "--opt-betas", "--clip-mode", "--layer-decay",
    "--layer-decay-min-scale", "--layer-decay-no-opt-scale", "--opt-kwargs", "--lr-base", "--lr-base-size",
    "--lr-base-scale", "--lr-noise", "--lr-noise-pct", "--lr-noise-std", "--lr-cycle-mul", "--lr-cycle-decay",
    "--lr-cycle-limit", "--lr-k-decay", "--epoch-repeats", "--start-epoch", "--decay-milestones", "--warmup-prefix",
    "--cooldown-epochs", "--patience-epochs", "--dr", "--no-aug", "--train-crop-mode", "--vflip",
    "--color-jitter-prob", "--grayscale-prob", "--gaussian-blur-prob", "--aug-splits", "--jsd-loss", "--bce-loss",
    "--bce-sum", "--bce-target-thresh", "--bce-pos-weight", "--remode", "--recount", "--resplit", "--cutmix-minmax",
    "--mixup-mode", "--mixup-off-epoch", "--drop-connect", "--drop-block", "--bn-momentum",
    "--bn-eps", "--dist-bn", "--split-bn", "--model-ema-force-cpu", "--model-ema-warmup", "--worker-seeding",
    "--val-interval", "--recovery-interval", "--checkpoint-hist", "--save-images", "--pin-mem", "--no-prefetcher",
    "--eval-metric", "--tta", "--use-multi-epochs-loader", "--log-wandb", "--wandb-project", "--wandb-tags",
    "--wandb-resume-id", "--kd-student-feature-dim", "--kd-teacher-feature-dim", "--kd-token-distill-type",
))
"""timm train.py flags (timm 1.0.x) with no equivalent here: an unknown-option error says so instead of suggesting
another flag. (timm's ``--resume PATH`` is a checkpoint file; ofakd's ``--resume`` takes a run folder. Its
``--interpolation`` and ``--train-interpolation`` are suggested ``--augment.interpolation``, which sets both.)"""


TIMM_KD_TYPES = {"logit": "kd"}
"""timm's ``--kd-distill-type`` values that an ofakd method computes exactly (KL on logits at T, x T^2)."""


def _kd_distill_type(value: str) -> list[tuple[str, Any]]:
    if value not in TIMM_KD_TYPES:
        raise ConfigError(
            f"timm's {value!r} distillation (MSE on pooled features, or a distillation token) has no exact "
            "equivalent here; use --kd-distill-type logit (--method kd) or an ofakd feature method: --method "
            "fitnet, rkd, rsd or ofa (`ofakd methods`)"
        )
    return [("method.name", TIMM_KD_TYPES[value])]


def _task_loss_weight(value: float) -> list[tuple[str, Any]]:
    """timm's complementary weights: the task loss G, and the distillation 1 - G unless its weight is given."""
    return [("method.gt_weight", value), ("method.kd_weight", Fallback(1.0 - value))]


def add_timm_distillation_aliases(parser: argparse.ArgumentParser) -> None:
    """timm's train.py distillation flags (``--kd-model-name`` ...) as the ofakd settings that compute the same."""
    group = parser.add_argument_group("timm's distillation spellings")
    add_queue(group, "--kd-model-name", metavar="NAME",
              to_overrides=lambda name: [("teacher.name", name),
                                         ("teacher.pretrained", Fallback(True, unless=("teacher.checkpoint",)))],
              help="teacher.name, with its pretrained weights as in timm (teacher.pretrained: true) unless "
              "--teacher-checkpoint gives weights")
    add_queue(group, "--kd-distill-type", metavar="TYPE", to_overrides=_kd_distill_type,
              help="logit: --method kd (timm's feature and token types have no exact equivalent)")
    group.add_argument("--kd-loss-type", choices=("kl",), default=argparse.SUPPRESS,
                       help="kl, the only one timm has (KD's loss)")
    add_override(group, "--kd-temperature", key="method.temperature", metavar="T", help="method.temperature")
    add_override(group, "--distill-loss-weight", key="method.kd_weight", metavar="W", help="method.kd_weight")
    add_queue(group, "--task-loss-weight", metavar="G", type=float, to_overrides=_task_loss_weight,
              help="method.gt_weight; method.kd_weight 1 - G unless --distill-loss-weight is given, as in timm")


def _annotation(key: str):
    """The type annotation of config field ``key`` (``section.field``), or None for a deeper key."""
    parts = key.split(".")
    return SECTIONS[parts[0]].model_fields[parts[1]].annotation if len(parts) == 2 else None


def add_field_flags(parser: argparse.ArgumentParser, sections: list[str], *, method_options: bool = False) -> None:
    """One ``--section.field VALUE`` flag per config field of ``sections`` (help = field doc)."""
    for section in sections:
        model = SECTIONS[section]
        docs = attribute_docs(model)
        group = parser.add_argument_group(f"{section} (config section '{section}:')")
        for field_name, field in model.model_fields.items():
            add_override(
                group, f"--{section}.{field_name}", key=f"{section}.{field_name}", raw=_is_str(field.annotation),
                metavar="V", help=_field_help(field, docs.get(field_name)),
            )
    if method_options:
        parser.open_sections = ("method",)
        parser.add_argument_group(
            "method options (config section 'method:')",
            "--method.OPTION VALUE sets any option of the chosen method (a YAML value), e.g. --method.eps [1.5] "
            "--method.ofa_weight 0.1 or, for a combination, --method.dist '{beta: 2}'. `ofakd methods NAME` lists "
            "a method's options and defaults; an unknown one is an error naming the nearest.",
        )


def canonical_argv(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with every flag in the spelling ``parser`` knows: hyphens and underscores interchangeable
    (``--train.batch-size`` -> ``--train.batch_size``, ``--print_config`` -> ``--print-config``), and
    ``--method.OPTION V`` -> ``--set method.OPTION=V`` where the parser takes any method option
    (``open_sections``). Order is kept; nothing after ``--`` changes."""
    known = parser._option_string_actions
    spellings = {_spelling(flag): flag for flag in known if flag.startswith("--")}
    open_sections = getattr(parser, "open_sections", ())
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            out += [token, *tokens]
            break
        flag, eq, value = str(token).partition("=")
        if not flag.startswith("--") or flag in known:
            out.append(token)
        elif _spelling(flag) in spellings:
            out.append(spellings[_spelling(flag)] + eq + value)
        elif flag[2:].partition(".")[0] in open_sections and flag.count(".") >= 1 and not flag.endswith("."):
            if not eq:
                value = next(tokens, None)
                if value is None:
                    parser.error(f"argument {flag}: expected one argument")
            out += ["--set", f"{_spelling(flag)}={value}"]
        else:
            out.append(token)
    return out


def _spelling(flag: str) -> str:
    """The flag without leading dashes, hyphens as underscores: the form two spellings share."""
    return flag.lstrip("-").replace("-", "_")


def suggest_flag(flag: str, known: list[str]) -> str | None:
    """The known flag a mistyped ``flag`` most likely meant: the same field in a section (``--crop-padding`` ->
    ``--augment.crop_padding``), a field it begins (``--train.batch`` -> ``--train.batch_size``), else the closest
    spelling (:mod:`ofakd.suggest`) with as many words of a whole flag or of a dotted flag's field name. None when
    nothing is close, and for timm's flags that have no equivalent here (:data:`TIMM_WITHOUT_EQUIVALENT`)."""
    if flag in TIMM_WITHOUT_EQUIVALENT:
        return None
    typed = _spelling(flag)
    section, _, leaf = typed.rpartition(".")
    long_flags = [k for k in known if k.startswith("--") and k not in ("--help", "--debug", "--version")]
    by_leaf: dict[str, list[str]] = {}
    for candidate in long_flags:
        by_leaf.setdefault(_spelling(candidate).rpartition(".")[2], []).append(candidate)

    def best(candidates: list[str]) -> str:  # the typed section's flag first, then a plain alias
        return min(candidates, key=lambda c: (not _spelling(c).startswith(section + "."), "." in c, c))

    whole = {_spelling(c): c for c in long_flags}
    close = nearest(typed, [c for c in whole if _words(c) == _words(typed)])
    if section and not any(_spelling(c).startswith(section + ".") for c in long_flags):
        # a mistyped section (``--trian.lr``), or one this command has no flags for (``train --method.eps``)
        return whole[close] if close else None
    if leaf in by_leaf:
        return best(by_leaf[leaf])
    starts = [c for lf, cs in by_leaf.items() if len(leaf) >= 3 and lf.startswith(leaf) for c in cs]
    if section:
        starts = [c for c in starts if _spelling(c).startswith(section + ".")] or starts
    if starts:
        return best(starts)
    if close:
        return whole[close]
    close = nearest(leaf, [c for c in by_leaf if _words(c) == _words(leaf)])
    return best(by_leaf[close]) if close else None


def _words(spelling: str) -> int:
    """How many words a flag's spelling has: a close spelling with as many is a typo (``--trian.lr``), one with a
    word more or less is another flag (``--bn-momentum`` is not ``--momentum``)."""
    return len(spelling.replace(".", "_").split("_"))


def _field_help(field, doc: str | None = None) -> str:
    text = (field.description or doc or "").strip().replace("\n", " ")
    kind = _type_name(field.annotation)
    text = f"{text} [{kind}]" if text else f"[{kind}]"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return text.replace("%", "%%")
    if isinstance(default, tuple):
        default = list(default)
    shown = "null" if default is None else default
    return f"{text} (default: {shown})".replace("%", "%%")


@functools.cache  # (parsing the source is most of the time `ofakd` takes to start)
def attribute_docs(model: type[BaseModel]) -> dict[str, str]:
    """Docstrings written under fields (``x: int = 1`` then ``\"\"\"doc\"\"\"``), for every class in the MRO."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _type_name(annotation) -> str:
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" or null" if type(None) in args else "")
    if origin in (tuple, list):
        return "list"
    if origin is dict or annotation is dict:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _is_str(annotation) -> bool:
    import types
    import typing

    if annotation is str:
        return True
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and set(args) <= {str, type(None)}


def resolve_config(
    args: argparse.Namespace,
    *,
    forced: list[tuple[str, Any]] | None = None,
    reset_sections: tuple[str, ...] = (),
) -> RunConfig:
    """The RunConfig of a command line: recipe (or the resumed run's config.yaml), then overrides.

    ``reset_sections`` are emptied before the overrides (``train`` drops the teacher), ``forced``
    apply last (``train`` forces ``method.name=vanilla``).
    """
    overrides = list(getattr(args, "overrides", None) or [])
    _check_teacher_run(args, overrides)
    resume = getattr(args, "resume", None)
    if resume:
        return _check_num_classes(args, _resumed_config(resume, overrides))
    raw = read_recipe(args.config) if getattr(args, "config", None) else {}
    for section in reset_sections:
        raw.pop(section, None)
    overrides = [*overrides, *(forced or [])]
    _drop_other_method_options(raw, overrides)
    _apply_overrides(raw, overrides)
    return _check_num_classes(args, validate(raw))


def _check_num_classes(args: argparse.Namespace, cfg: RunConfig) -> RunConfig:
    """``cfg``, once timm's ``--num-classes N`` (when given) is the data set's number of classes."""
    expected = getattr(args, "num_classes", None)
    if expected is None:
        return cfg
    from ..data import dataset_num_classes  # on use: `ofakd --help` stays torch-free

    found = dataset_num_classes(cfg.data)
    if found != expected:
        raise ConfigError(
            f"--num-classes {expected}: data set {cfg.data.name} has {found} classes, and the classifier is sized "
            f"from the data set's classes; drop --num-classes, or point --data / --data-dir at data with {expected}"
        )
    return cfg


def _apply_overrides(raw: dict[str, Any], overrides: list[tuple[str, Any]]) -> None:
    """Set each dotted key in order; then each :class:`Fallback` where it :meth:`~Fallback.applies`."""
    for key, value in overrides:
        if isinstance(value, (SquareSize, InputChannels)):
            value.apply(raw, key)
        elif not isinstance(value, Fallback):
            apply_override(raw, key, value)
    for key, value in overrides:
        if isinstance(value, Fallback) and value.applies(raw, key):
            apply_override(raw, key, value.default)


def _resumed_config(resume: str | Path, overrides: list[tuple[str, Any]]) -> RunConfig:
    """The resumed run's config.yaml with ``overrides`` applied; an override that changes a value outside
    RESUME_SAFE_KEYS is an error (the run's own original flags change nothing and pass)."""
    from ..run_folder import RunRecord  # on use: it reads weights with torch (`ofakd --help` does not)

    run = RunRecord.at(resume)
    if not run.has_config:
        raise ConfigError(f"--resume {resume}: no config.yaml there; pass the folder of a run (runs/NAME)")
    recorded = run.config()
    raw = copy.deepcopy(recorded)
    _apply_overrides(raw, overrides)
    cfg = validate(raw)
    changed = resume_changes(validate(recorded).to_dict(), cfg.to_dict())
    if changed:
        raise ConfigError(
            f"--resume continues the run as it was configured; {changed[0]!r} cannot change "
            f"(only {', '.join(RESUME_SAFE_KEYS)} can, and train.epochs to train on). Start a new run to change it."
        )
    return cfg


_TEACHER_RUN_CLASHES = {"teacher.checkpoint": "--teacher-checkpoint", "teacher.name": "--teacher",
                        "teacher.pretrained": "teacher.pretrained"}
"""Overrides that name the teacher's model or weights, which --teacher-run takes from its run."""


def _check_teacher_run(args: argparse.Namespace, overrides: list[tuple[str, Any]]) -> None:
    teacher_run = getattr(args, "teacher_run", None)
    clash = next((key for key, _ in overrides if key in _TEACHER_RUN_CLASHES), None)
    if teacher_run is not None and clash is not None:
        flag = _TEACHER_RUN_CLASHES[clash]
        raise ConfigError(
            f"--teacher-run {teacher_run} gives the teacher's name and weights; drop {flag} (or drop --teacher-run "
            "and pass --teacher NAME --teacher-checkpoint PATH)"
        )


def _drop_other_method_options(raw: dict[str, Any], overrides: list[tuple[str, Any]]) -> None:
    """When the command line names another method than the recipe's (``--config paper-... --method kd``),
    drop the recipe's method options (they were chosen for its method), with a note on stderr; options
    given on the command line still apply."""
    import sys

    recipe = raw.get("method") if isinstance(raw.get("method"), dict) else {}
    recipe_name = recipe.get("name", SECTIONS["method"].model_fields["name"].default)
    trial: dict[str, Any] = {"method": {"name": recipe_name}}
    for key, value in overrides:
        if key == "method" or key == "method.name":
            apply_override(trial, key, value)
    name = trial["method"].get("name") if isinstance(trial["method"], dict) else recipe_name
    dropped = [key for key in recipe if key != "name"]
    if name == recipe_name or not dropped:
        return
    raw["method"] = {"name": recipe_name}
    print(f"note: method {name} replaces the recipe's {recipe_name}; the recipe's {recipe_name} options "
          f"({', '.join(dropped)}) are dropped (set {name}'s with --method.OPTION)", file=sys.stderr)


def _lookup(raw: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` in ``raw``, or None."""
    node: Any = raw
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def print_config(cfg: RunConfig) -> None:
    print(dump_config(cfg), end="")


class TeacherRunAction(argparse.Action):
    """``--teacher-run DIR``: queue the whole ``teacher:`` section read from a train run (its model's name, kwargs,
    input size, normalisation, and ``best.safetensors``: :meth:`~ofakd.run_folder.RunRecord.teacher_section`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from ..run_folder import RunRecord  # on use: it reads weights with torch (`ofakd --help` does not)

        pending = list(getattr(namespace, "overrides", None) or [])
        pending.append(("teacher", RunRecord.at(values).teacher_section()))
        # a teacher cache named before --teacher-run replays this teacher: kept (and checked against it), not dropped
        pending += [(key, value) for key, value in pending[:-1] if key in ("teacher.cache", "teacher.cache_cycle")]
        namespace.overrides = pending
        namespace.teacher_run = values
