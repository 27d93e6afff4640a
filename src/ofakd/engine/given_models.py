"""The models of a distiller built in Python, checked before ``ofakd.fit`` trains them: weights that exist (not on
the meta device), float32 parameters, a teacher that is not the student, and a student whose forward returns the
logits. Each is a one-line error naming the model and the fix, not a raw torch error from inside a step."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import torch
from torch import nn

from ..distill import Distiller
from ..errors import ModelError
from ..models.info import num_classes


def check_models(distiller: Distiller, input_size: Sequence[int]) -> None:
    """Raise :class:`ModelError` when the distiller's student or live teacher cannot be trained as given."""
    student = distiller.student
    teacher = getattr(distiller.teacher, "model", None)  # a live teacher's model (a cache has none)
    if teacher is not None and _shares_parameters(teacher, student):
        raise ModelError("the teacher and the student are the same module (or share parameters): distilling would "
                         "train the teacher too; pass a separate student (another model, or copy.deepcopy(model))")
    _check_weights(student, "student")
    if teacher is not None:  # a teacher in half precision runs under autocast of that precision (LiveTeacher(amp=))
        half = _AUTOCAST_DTYPE.get(getattr(distiller.teacher, "amp", None))
        _check_weights(teacher, "teacher", also=half)
    _check_logits(student, input_size)


_AUTOCAST_DTYPE = {"bf16": "torch.bfloat16", "fp16": "torch.float16"}


def _shares_parameters(a: nn.Module, b: nn.Module) -> bool:
    return a is b or bool({id(p) for p in a.parameters()} & {id(p) for p in b.parameters()})


def _check_weights(model: nn.Module, role: str, also: str | None = None) -> None:
    """Weights that exist, in float32 (or ``also``: the dtype a teacher's own autocast runs it in)."""
    tensors = list(chain(model.named_parameters(), model.named_buffers()))
    meta = next((name for name, t in tensors if t.is_meta), None)
    if meta is not None:
        raise ModelError(f"the {role}'s {meta} is on the meta device: the {role} has no weights yet; load them first "
                         f"({role}.to_empty(device='cpu') then load_state_dict, or build it without device='meta')")
    dtypes = sorted({str(t.dtype) for _, t in tensors if t.is_floating_point()} - {"torch.float32", also})
    if dtypes:
        raise ModelError(f"the {role} holds {', '.join(dtypes)} weights beside float32 ones or instead of them; fit "
                         f"keeps the models in float32 (train.amp runs their forward passes in bf16/fp16): pass "
                         f"{role}.float()" + (", or a LiveTeacher(model, dtype=..., amp='bf16' or 'fp16') that runs "
                                               "it in its own precision" if role == "teacher" else ""))


def _check_logits(student: nn.Module, input_size: Sequence[int]) -> None:
    """One forward of a blank image (eval mode, no gradients): the student must return a (1, classes) tensor."""
    parameter = next(student.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            out = student(torch.zeros(1, *input_size, device=device))
    finally:
        student.train(was_training)
    classes = num_classes(student)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, classes):
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ModelError(f"the student's forward returns {got} for one image, not its logits (1, {classes}); make "
                         "forward return the (batch, classes) logits tensor (wrap the model if it returns more)")
