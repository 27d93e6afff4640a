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
    """An override value that applies only where the key is unset (null): ``--model-ema`` turns the EMA on
    with timm's decay but keeps a decay the recipe or an earlier flag chose."""

    default: Any


class _Fallback(_Override):
    """Queue ``(key, Fallback(const))``; the flag takes no value."""

    def __init__(self, option_strings, dest, key=None, const=None, **kwargs):
        super().__init__(option_strings, dest, key=key, nargs=0, const=const, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), (self.key, Fallback(self.const))]


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


TIMM_ALIASES: list[tuple[tuple[str, ...], str]] = [
    (("--lr",), "train.lr"),
    (("-b", "--batch-size"), "train.batch_size"),
    (("--opt",), "train.optimizer"),
    (("--weight-decay",), "train.weight_decay"),
    (("--momentum",), "train.momentum"),
    (("--sched",), "train.scheduler"),
    (("--min-lr",), "train.min_lr"),
    (("--warmup-epochs",), "train.warmup_epochs"),
    (("--warmup-lr",), "train.warmup_lr"),
    (("--decay-epochs",), "train.decay_epochs"),
    (("--decay-rate",), "train.decay_rate"),
    (("--clip-grad",), "train.clip_grad"),
    (("--model-ema-decay",), "train.ema_decay"),
    (("--log-interval",), "train.log_every"),
    (("--smoothing",), "augment.smoothing"),
    (("--mixup",), "augment.mixup"),
    (("--cutmix",), "augment.cutmix"),
    (("-j", "--workers"), "data.workers"),
]
"""timm's train.py flags whose meaning is the same here: (flags, config key). Also timm's: ``--epochs``,
``--seed``, ``--output`` (``run.out_dir``), ``--experiment`` (``run.name``), ``--model-ema``, ``--amp``
and ``--amp-dtype`` (see :func:`add_timm_aliases`)."""

TIMM_EMA_DECAY = 0.9998
"""timm's default ``--model-ema-decay``."""


def add_timm_aliases(parser: argparse.ArgumentParser) -> None:
    """timm's spellings of common options (:data:`TIMM_ALIASES`), each queueing its config key."""
    group = parser.add_argument_group("timm's spellings (aliases of the config keys named)")
    for flags, key in TIMM_ALIASES:
        section, field_name = key.split(".")
        add_override(group, *flags, key=key, raw=_is_str(SECTIONS[section].model_fields[field_name].annotation),
                     metavar="V", help=key)
    group.add_argument("--model-ema", action=_Fallback, key="train.ema_decay", const=TIMM_EMA_DECAY,
                       dest="overrides", default=argparse.SUPPRESS,
                       help=f"keep an EMA of the student (train.ema_decay: the recipe's, else {TIMM_EMA_DECAY})")
    group.add_argument("--amp", action=_AmpSwitch, dest="overrides", default=argparse.SUPPRESS,
                       help="mixed precision, float16 as in timm (train.amp fp16, a CUDA GPU); "
                       "--amp-dtype bfloat16 for bf16 (also on CPU)")
    group.add_argument("--amp-dtype", action=_AmpDtype, choices=("float16", "bfloat16"), default=argparse.SUPPRESS,
                       help="train.amp fp16 or bf16")


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
    """The known flag a mistyped ``flag`` most likely meant: the same field in a section (``--mixup`` ->
    ``--augment.mixup``), a field it begins (``--train.batch`` -> ``--train.batch_size``), else the closest
    spelling (:mod:`ofakd.suggest`) of a whole flag or of a dotted flag's field name. None when nothing is close."""
    typed = _spelling(flag)
    section, _, leaf = typed.rpartition(".")
    long_flags = [k for k in known if k.startswith("--") and k not in ("--help", "--debug", "--version")]
    by_leaf: dict[str, list[str]] = {}
    for candidate in long_flags:
        by_leaf.setdefault(_spelling(candidate).rpartition(".")[2], []).append(candidate)

    def best(candidates: list[str]) -> str:  # the typed section's flag first, then a plain alias
        return min(candidates, key=lambda c: (not _spelling(c).startswith(section + "."), "." in c, c))

    whole = {_spelling(c): c for c in long_flags}
    close = nearest(typed, whole)
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
    close = nearest(leaf, by_leaf)
    return best(by_leaf[close]) if close else None


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
        return _resumed_config(resume, overrides)
    raw = read_recipe(args.config) if getattr(args, "config", None) else {}
    for section in reset_sections:
        raw.pop(section, None)
    overrides = [*overrides, *(forced or [])]
    _drop_other_method_options(raw, overrides)
    _apply_overrides(raw, overrides)
    return validate(raw)


def _apply_overrides(raw: dict[str, Any], overrides: list[tuple[str, Any]]) -> None:
    """Set each dotted key; a :class:`Fallback` value sets its default only where ``raw`` has none."""
    for key, value in overrides:
        if isinstance(value, Fallback):
            value = value.default if _lookup(raw, key) is None else _lookup(raw, key)
        apply_override(raw, key, value)


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
