"""Command-line options shared by ``train``, ``distill`` and ``eval``: recipe, overrides, dotted flags.

Every config field has a dotted flag (``--train.lr 0.1``, ``--data.root ./data``,
``--method.eps [1.5]``) and ``--set KEY=VALUE`` reaches any key, nested ones included
(``--set student.kwargs.img_size=32``). Values are read as YAML. They apply in command-line
order, after the recipe.
"""

from __future__ import annotations

import argparse
import copy
import functools
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..errors import ConfigError
from ..run_folder import RunFolder
from .load import (
    apply_override,
    dump_config,
    list_recipes,
    parse_value,
    read_recipe,
    split_override,
    validate,
)
from .schema import RESUME_SAFE_KEYS, SECTIONS, RunConfig, resume_changes


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
    add_override(run, "--name", key="run.name", raw=True, metavar="NAME",
              help="run folder name under --out-dir (default: method-teacher-student-data-sSEED)")
    add_override(run, "--out-dir", key="run.out_dir", raw=True, metavar="DIR", help="folder holding run folders (default: runs)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly from its last.pt "
                     f"(its config.yaml is used; only {', '.join(RESUME_SAFE_KEYS)} may be overridden)")
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
        group = parser.add_argument_group(
            "method options (config section 'method:'; each method checks its own, see `ofakd methods`)"
        )
        for option, (help_text, methods) in sorted(_method_option_fields().items()):
            add_override(group, f"--method.{option}", key=f"method.{option}", metavar="V",
                      help=f"{help_text} (methods: {', '.join(methods)})")


def _method_option_fields() -> dict[str, tuple[str, list[str]]]:
    from ..distill import get_method, list_methods  # on use: the methods import torch

    fields: dict[str, tuple[str, list[str]]] = {}
    for name in list_methods():
        options = get_method(name).Options
        docs = attribute_docs(options)
        for option, field in options.model_fields.items():
            text, methods = fields.get(option, (_field_help(field, docs.get(option)), []))
            fields[option] = (text, [*methods, name])
    return fields


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
    for key, value in [*overrides, *(forced or [])]:
        apply_override(raw, key, value)
    return validate(raw)


def _resumed_config(resume: str | Path, overrides: list[tuple[str, Any]]) -> RunConfig:
    """The resumed run's config.yaml with ``overrides`` applied; an override that changes a value outside
    RESUME_SAFE_KEYS is an error (the run's own original flags change nothing and pass)."""
    path = RunFolder(Path(resume)).config
    if not path.is_file():
        raise ConfigError(f"--resume {resume}: no config.yaml there; pass the folder of a run (runs/NAME)")
    recorded = read_recipe(str(path))
    raw = copy.deepcopy(recorded)
    for key, value in overrides:
        apply_override(raw, key, value)
    cfg = validate(raw)
    changed = resume_changes(validate(recorded).to_dict(), cfg.to_dict())
    if changed:
        raise ConfigError(
            f"--resume continues the run as it was configured; {changed[0]!r} cannot change "
            f"(only {', '.join(RESUME_SAFE_KEYS)} can). Start a new run to change it."
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


def print_config(cfg: RunConfig) -> None:
    print(dump_config(cfg), end="")


class TeacherRunAction(argparse.Action):
    """``--teacher-run DIR``: queue the whole ``teacher:`` section read from a train run."""

    def __call__(self, parser, namespace, values, option_string=None):
        pending = list(getattr(namespace, "overrides", None) or [])
        pending.append(("teacher", teacher_from_run(values)))
        namespace.overrides = pending
        namespace.teacher_run = values


def teacher_from_run(run_dir: str | Path) -> dict[str, Any]:
    """The ``teacher:`` section for a model trained by ``ofakd train`` in ``run_dir``
    (its name, kwargs, input size, normalisation, and ``best.safetensors``)."""
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    config, weights = folder.config, folder.best
    if not config.is_file() or not weights.is_file():
        raise ConfigError(
            f"--teacher-run {str(run_dir)!r}: expected config.yaml and best.safetensors there "
            "(the folder of a finished `ofakd train` run)"
        )
    student = read_recipe(str(config)).get("student") or {}
    section = {k: v for k, v in student.items() if k in ("name", "kwargs", "input_size", "mean", "std")}
    section["checkpoint"] = str(weights)
    return section
