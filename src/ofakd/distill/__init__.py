"""Distillation methods: one file each, registered with ``@register_method``."""

from __future__ import annotations

from torch import nn

from ..errors import ModelError
from .base import Distiller, MethodOptions, TeacherOutput, parse_options
from .registry import get_method, list_methods, register_method

__all__ = [
    "Distiller",
    "MethodOptions",
    "TeacherOutput",
    "create_distiller",
    "get_method",
    "list_methods",
    "register_method",
]


def create_distiller(
    method: str,
    teacher: nn.Module | None = None,
    student: nn.Module | None = None,
    *,
    input_size: tuple[int, int, int] | None = None,
    teacher_input=None,
    num_samples: int | None = None,
    num_teacher_classes: int | None = None,
    teacher_channels_last: bool = True,
    **options,
) -> Distiller:
    """Build method ``method`` (see :func:`list_methods`) for ``teacher`` -> ``student``.

    ``options`` are the method's own (e.g. ``eps``, ``temperature``, ``stages`` for OFA) and
    are validated: an unknown option names the closest valid one. ``input_size`` (C, H, W)
    is the student's input, used to size feature branches; by default the student's own.
    ``teacher`` may be None when its logits come from a cache (give ``num_teacher_classes``).
    The teacher is frozen for inference and, unless ``teacher_channels_last=False``, run in
    channels-last memory format (same values, faster convolutions).
    """
    from ..models.info import input_spec

    cls = get_method(method)
    if student is None:
        raise ModelError("create_distiller needs a student model")
    parsed = parse_options(cls, options)
    if cls.needs_teacher:
        teacher_classes = num_teacher_classes if teacher is None else getattr(teacher, "num_classes", None)
        if teacher is None and teacher_classes is None:
            raise ModelError(f"method {method!r} needs a teacher model (or num_teacher_classes with cached logits)")
        if teacher_classes != student.num_classes:
            raise ModelError(
                f"teacher has {teacher_classes} classes but student has {student.num_classes}; "
                "create both with the same num_classes"
            )
    size = tuple(input_size) if input_size is not None else input_spec(student).input_size
    return cls(teacher, student, parsed, input_size=size, teacher_input=teacher_input, num_samples=num_samples,
               teacher_channels_last=teacher_channels_last)
