"""Distillation methods: one file each, registered with ``@register_method``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..errors import ConfigError, ModelError
from ..models.info import fixed_input_hw, input_spec, num_classes
from ..models.tap import ModelOutput
from ..teacher.data_view import DataView
from ..teacher.given_teacher import as_source, teacher_model
from ..teacher.protocol import TeacherSource
from .base import Distiller, MethodOptions
from .method import Method, resolve_method
from .registry import get_method, list_methods, register_method

__all__ = [
    "Distiller",
    "Method",
    "MethodOptions",
    "ModelOutput",
    "create_distiller",
    "get_method",
    "list_methods",
    "register_method",
    "resolve_method",
]


def create_distiller(
    method: str | Method,
    teacher: nn.Module | TeacherSource | None = None,
    student: nn.Module | None = None,
    *,
    input_size: tuple[int, int, int] | None = None,
    teacher_input=None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    teacher_size: int | Sequence[int] | None = None,
    num_samples: int | None = None,
    num_teacher_classes: int | None = None,
    teacher_channels_last: bool = True,
    student_stages: Sequence[str] | None = None,
    teacher_stages: Sequence[str] | None = None,
    **options,
) -> Distiller:
    """Build method ``method`` (a name, see :func:`list_methods`, or a :class:`~ofakd.distill.method.Method`
    already resolved) for ``teacher`` -> ``student``.

    ``options`` are the method's own (e.g. ``eps``, ``temperature``, ``stages`` for OFA; with a name only) and
    are validated: an unknown option names the closest valid one. ``input_size`` (C, H, W)
    is the size of the batches (the student's input), used to size feature branches; by default the
    student's own. ``mean``/``std`` are the batches' normalisation (what the data's transforms normalise
    with; :func:`ofakd.fit` takes them too).

    ``teacher`` is a model (run live: frozen in place, BatchNorms folded and, unless
    ``teacher_channels_last=False``, in channels-last memory format), a teacher source
    (:class:`~ofakd.teacher.live.LiveTeacher`, or a cache's :class:`~ofakd.cache.cached_teacher.CachedTeacher`),
    or None when the teacher's outputs are given to :meth:`Distiller.distill` (then give ``num_teacher_classes``).
    A teacher model sees the batch as it expects it (:class:`~ofakd.teacher.data_view.DataView`): re-normalised
    from ``mean``/``std`` to its pretrained config's, channels 1 <-> 3, resized to its fixed input size (a ViT's)
    or to ``teacher_size`` (H, W) when given (a CNN otherwise sees the batch's own size). Without ``mean``/``std``
    the batches are taken to be normalised as the student expects; a teacher that expects another
    normalisation then refuses them with an error naming ``mean=``/``std=``. ``teacher_input`` (a callable
    ``x -> x_teacher``) replaces that view.

    Student and teacher may be any ``nn.Module`` returning logits: without a ``num_classes`` attribute the
    outputs of their last ``nn.Linear`` are read. Methods that read stage features (OFA, FitNet) take them
    from timm's ``feature_info``, or from the four modules named in ``student_stages`` /
    ``teacher_stages`` (dotted names in ``model.named_modules()``, e.g. ``["layer1", ..., "layer4"]``).
    """
    if isinstance(method, Method):
        if options:
            raise ConfigError(f"create_distiller: method {method.method_name!r} comes with its options resolved; "
                              f"drop {', '.join(sorted(options))} (or pass the method's name)")
    else:
        method = resolve_method(method, options)
    if student is None:
        raise ModelError("create_distiller needs a student model")
    student_classes = num_classes(student)
    if method.needs_teacher:
        teacher_classes = num_teacher_classes if teacher is None else num_classes(teacher)
        if teacher is None and teacher_classes is None:
            raise ModelError(f"method {method.method_name!r} needs a teacher model (or num_teacher_classes with cached logits)")
        if teacher_classes != student_classes:
            raise ModelError(
                f"teacher has {teacher_classes} classes but student has {student_classes}; "
                "create both with the same num_classes"
            )
    size = tuple(input_size) if input_size is not None else default_input_size(student, teacher)
    model = teacher_model(teacher)
    if teacher_size is not None and (teacher_input is not None or model is None):
        raise ModelError("teacher_size= sets the size a teacher model is fed; it cannot apply to "
                         f"{'teacher_input=' if teacher_input is not None else 'a teacher source'}: drop one of them")
    if teacher_input is None and model is not None:
        teacher_input = DataView(model, student, size, teacher_size=teacher_size)
    source = as_source(teacher, input_view=teacher_input, channels_last=teacher_channels_last,
                       stage_modules=teacher_stages)
    distiller = method.build(source, student, input_size=size, num_samples=num_samples, student_stages=student_stages)
    if mean is not None or std is not None:
        distiller.normalised_with(mean, std)
    return distiller


def default_input_size(student: nn.Module, teacher) -> tuple[int, int, int]:
    """The student's input size when none is given: the size its patch embedding is built for; for a
    student that takes any size (a CNN) beside a teacher model that does not, the teacher's; else the
    student's pretrained config."""
    spec = input_spec(student)
    model = teacher_model(teacher)
    if fixed_input_hw(student) is None and model is not None:
        teacher_hw = fixed_input_hw(model)
        if teacher_hw is not None:
            return (spec.input_size[0], *teacher_hw)
    return spec.input_size
