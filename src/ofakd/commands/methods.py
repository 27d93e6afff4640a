"""``ofakd methods``: every distillation method, what it does, its options and what it needs."""

from __future__ import annotations

import argparse
import json
import textwrap
import types
import typing

NAME = "methods"
HELP = "list the distillation methods, their options (with defaults) and what each needs"
DESCRIPTION = (
    "List every distillation method (--method NAME) with a one-line summary, its options and their "
    "defaults (set them in the config or on the command line), and whether it needs teacher features, "
    "which a logits-only teacher cache cannot give. Methods combine with '+', e.g. --method ofa+dist."
)

COMBINE_NOTE = (
    "Combine methods with '+', e.g. --method ofa+dist: the teacher and the student run once per step; one gt "
    "term plus every part's own terms (two parts giving the same term, e.g. kd in ofa+rsd, is an error: set "
    "rsd.kd_weight=0). Options: <part>.<option>=value, or flat when only one part has the option; gt_weight, "
    "gt_loss and part_weights=[w1, w2] (scales each part) belong to the combination."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="METHOD", help="show only these methods (default: all)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of text")


def type_name(annotation) -> str:
    """``float``, ``list[int]``, ``list[int] | None`` ... for an option's annotation."""
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def describe(cls) -> dict:
    """A method class as a plain dict: name, summary, needs, options."""
    options = [
        {
            "name": name,
            "type": type_name(field.annotation),
            "default": field.get_default(call_default_factory=True),
            "description": " ".join((field.description or "").split()),
        }
        for name, field in cls.Options.model_fields.items()
    ]
    return {
        "name": cls.method_name,
        "summary": cls.summary,
        "needs_teacher": cls.needs_teacher,
        "needs_teacher_features": cls.needs_teacher_features,
        "needs_sample_indices": cls.needs_sample_indices,
        "options": options,
        "search_space": {name: dim.describe() for name, dim in cls.Options.search_space.items()},
    }


def teacher_line(info: dict) -> str:
    if not info["needs_teacher"]:
        return "teacher: none"
    if info["needs_teacher_features"]:
        return "teacher: live teacher with features (cannot use a logits-only teacher cache)"
    return "teacher: logits only (a teacher-output cache works)"


def format_method(info: dict, width: int = 100) -> str:
    lines = [f"{info['name']}", f"    {info['summary']}", f"    {teacher_line(info)}"]
    if info["needs_sample_indices"]:
        lines.append("    data: needs the dataset index of each sample (given by the data loader)")
    if info["search_space"]:
        searched = ", ".join(f"{name} {where}" for name, where in info["search_space"].items())
        lines.append(f"    searched by `ofakd tune`: {searched}, and the lr")
    lines.append("    options:")
    for option in info["options"]:
        # defaults as written in a YAML config: 1.0, [1, 2, 3, 4], false, null
        head = f"      {option['name']}: {option['type']} = {json.dumps(option['default'], default=repr)}"
        lines.append(head)
        if option["description"]:
            lines.extend(textwrap.wrap(option["description"], width, initial_indent=" " * 10,
                                       subsequent_indent=" " * 10))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..distill import get_method, list_methods

    names = args.names or list_methods()
    classes = []
    for name in names:
        cls = get_method(name)  # a clear error for unknown names
        parts = getattr(cls, "parts", None)
        classes.extend(parts.values() if parts else [cls])
    infos = [describe(cls) for cls in dict.fromkeys(classes)]
    if args.json:
        print(json.dumps(infos, indent=2, default=repr))
        return 0
    print("\n\n".join(format_method(info) for info in infos))
    print()
    print("\n".join(textwrap.wrap(COMBINE_NOTE, 100)))
    return 0
