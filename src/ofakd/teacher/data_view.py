"""A teacher model's view of batches given in Python (``create_distiller``, ``ofakd.fit``): :class:`DataView`.

The CLI prepares its data for the student and so knows their normalisation. Tensors given in Python come
normalised however the user's transforms made them, so the teacher's view is built from three facts:

* what the teacher expects: its pretrained config (timm's, or the one ofakd gives every model it hands
  back, e.g. ``ofakd.evaluation.load_student("runs/teacher")``); a model without one (a plain
  ``nn.Module``) takes the data's normalisation as it is;
* its size: a teacher with a fixed input size (a ViT's patch embedding) gets the batch resized to it, or to
  ``teacher_size`` when that is asked; any other teacher (a CNN) sees the batch at its own size;
* the data's normalisation (``mean``/``std``). Until it is given the data are taken to be normalised as
  the student expects; when the teacher expects another normalisation that guess would feed it wrong
  inputs without a sign, so the teacher refuses batches (:meth:`DataView.check`) until it is given.

With the data's normalisation known, the view is the CLI's :class:`~ofakd.teacher.input_view.TeacherInput`
(re-normalise, channels 1 <-> 3, resize).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..data.transforms import channel_stats
from ..errors import ConfigError
from ..models.info import InputSpec, declares_input, fixed_input_hw, input_spec
from .input_view import TeacherInput

Normalisation = tuple[tuple[float, ...], tuple[float, ...]]
"""(mean, std) per channel."""


class DataView(nn.Module):
    """``x_data -> x_teacher`` for a teacher model fed batches of ``data_size`` (C, H, W) given in Python.

    ``teacher_size`` (H, W) resizes the batch for a teacher that takes any size (default: a teacher with a
    fixed input size is resized to it, any other sees the data's size). :meth:`normalised_with` gives the
    data's normalisation; until then it is taken to be the student's, and :attr:`problem` says why the
    teacher cannot be fed when it expects another."""

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        data_size: Sequence[int],
        *,
        teacher_size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        own = input_spec(teacher)
        if isinstance(teacher_size, int):
            teacher_size = (teacher_size, teacher_size)
        hw = tuple(teacher_size) if teacher_size is not None else fixed_input_hw(teacher) or tuple(data_size[1:])
        if len(hw) != 2 or min(hw) < 1:
            raise ConfigError(f"teacher_size must be (H, W) with H, W >= 1, got {teacher_size}")
        self.data_size = tuple(int(v) for v in data_size)
        self.teacher_size = (own.input_size[0], int(hw[0]), int(hw[1]))
        self.interpolation = own.interpolation
        self.expected: Normalisation | None = (own.mean, own.std) if declares_input(teacher) else None
        """What the teacher expects (its pretrained config), or None: whatever the data have."""
        student_spec = input_spec(student)
        self.assumed: Normalisation = (student_spec.mean, student_spec.std)
        """The data's normalisation until one is given: the student's."""
        self.given: Normalisation | None = None
        """The data's normalisation, once :meth:`normalised_with` gave it."""
        self.adapter = self._adapter(self.assumed)
        self.identity = self.adapter.is_identity

    def normalised_with(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """The batches are normalised with ``mean``/``std`` (per channel, or one value for all)."""
        given = data_normalisation(mean, std, self.data_size[0])
        device = self.adapter.student_mean.device
        self.given = given
        self.adapter = self._adapter(given).to(device)
        self.identity = self.adapter.is_identity

    @property
    def problem(self) -> str | None:
        """Why the teacher cannot be fed yet (its normalisation is not the one the data are taken to have), or
        None."""
        if self.given is not None or self.expected is None or _same(self.expected, self.assumed):
            return None
        return (f"the teacher expects inputs normalised with mean {_rounded(self.expected[0])} std "
                f"{_rounded(self.expected[1])} (its pretrained config) but the student with mean "
                f"{_rounded(self.assumed[0])} std {_rounded(self.assumed[1])}, and the batches' own normalisation is "
                "unknown: pass mean= and std= (what your data's transforms normalise with) to ofakd.fit or "
                "create_distiller, and the teacher's view re-normalises from it")

    def check(self) -> None:
        """Raise :attr:`problem` when there is one."""
        problem = self.problem
        if problem is not None:
            raise ConfigError(problem)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.identity else self.adapter(x)

    @property
    def output_spec(self) -> InputSpec:
        """What the teacher is fed: its size, mean and std, resized with this interpolation."""
        return self.adapter.output_spec

    def _adapter(self, data: Normalisation) -> TeacherInput:
        teacher = self.expected or tuple(channel_stats(v, self.teacher_size[0], "mean/std") for v in data)
        return TeacherInput(self.data_size, *data, self.teacher_size, *teacher, interpolation=self.interpolation)

    def extra_repr(self) -> str:
        return f"data {self.data_size} -> teacher {self.teacher_size}"


def data_normalisation(mean: Sequence[float] | None, std: Sequence[float] | None, channels: int) -> Normalisation:
    """``(mean, std)`` given for batches of ``channels`` channels, one value per channel (one value repeats);
    a clear error when one is missing, a count does not fit or a std is not positive."""
    if mean is None or std is None:
        raise ConfigError("the data's normalisation needs both mean= and std= (what your transforms normalise with), "
                          "or neither")
    given = (channel_stats(mean, channels, "mean"), channel_stats(std, channels, "std"))
    if any(v <= 0 for v in given[1]):
        raise ConfigError(f"std must be > 0 for every channel, got {list(given[1])}")
    return given


def _same(a: Normalisation, b: Normalisation) -> bool:
    """The same normalisation, compared over the channels both have (a 3-channel one averaged to 1)."""
    channels = min(len(a[0]), len(b[0]))
    return all(channel_stats(x, channels, "mean/std") == channel_stats(y, channels, "mean/std") for x, y in zip(a, b))


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(v), 4) for v in values]
