"""The teacher's view of a student batch: re-normalised, channel-matched and resized (:class:`TeacherInput`).

The data is prepared for the student (its size, mean and std). A teacher trained with
another normalisation or input size gets

    x_t = resize((x · std_s + mean_s − mean_t) / std_t)   to the teacher's H×W,

with 1 → 3 channels repeated and 3 → 1 averaged (in pixel space, before re-normalising).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import channel_stats
from ..models.info import InputSpec


class TeacherInput(nn.Module):
    """``x_student -> x_teacher``; buffers are not saved in state_dicts (they come from the config)."""

    def __init__(
        self,
        student_size: Sequence[int],
        student_mean: Sequence[float],
        student_std: Sequence[float],
        teacher_size: Sequence[int],
        teacher_mean: Sequence[float],
        teacher_std: Sequence[float],
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        self.student_channels, self.teacher_channels = int(student_size[0]), int(teacher_size[0])
        self.teacher_hw = (int(teacher_size[1]), int(teacher_size[2]))
        self.resize = tuple(student_size[1:]) != tuple(teacher_size[1:])
        self.interpolation = "bicubic" if interpolation == "bicubic" else "bilinear"
        s_mean = channel_stats(student_mean, self.student_channels, "student mean")
        s_std = channel_stats(student_std, self.student_channels, "student std")
        t_mean = channel_stats(teacher_mean, self.teacher_channels, "teacher mean")
        t_std = channel_stats(teacher_std, self.teacher_channels, "teacher std")
        self.register_buffer("student_mean", _column(s_mean), persistent=False)
        self.register_buffer("student_std", _column(s_std), persistent=False)
        self.register_buffer("teacher_mean", _column(t_mean), persistent=False)
        self.register_buffer("teacher_std", _column(t_std), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x * self.student_std + self.student_mean
        if self.teacher_channels != self.student_channels:
            if self.teacher_channels == 3:
                pixels = pixels.expand(-1, 3, -1, -1)
            else:
                pixels = pixels.mean(dim=1, keepdim=True)
        out = (pixels - self.teacher_mean) / self.teacher_std
        if self.resize:
            down = out.shape[-2] > self.teacher_hw[0] or out.shape[-1] > self.teacher_hw[1]
            out = F.interpolate(out, size=self.teacher_hw, mode=self.interpolation, align_corners=False, antialias=down)
        return out

    @property
    def is_identity(self) -> bool:
        """True when the teacher takes the student's batch as it is (same size, channels, mean, std)."""
        return (
            not self.resize
            and self.student_channels == self.teacher_channels
            and torch.equal(self.student_mean, self.teacher_mean)
            and torch.equal(self.student_std, self.teacher_std)
        )

    @property
    def output_spec(self) -> InputSpec:
        """What the teacher is fed: its size, mean and std, resized with this interpolation."""
        return InputSpec((self.teacher_channels, *self.teacher_hw), tuple(self.teacher_mean.flatten().tolist()),
                         tuple(self.teacher_std.flatten().tolist()), self.interpolation)

    def extra_repr(self) -> str:
        return f"channels {self.student_channels}->{self.teacher_channels}, resize to {self.teacher_hw if self.resize else 'same'}"


def _column(values: Sequence[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def teacher_adapter(student_spec: InputSpec, teacher_spec: InputSpec) -> TeacherInput | None:
    """The teacher's view of a student batch prepared for ``student_spec``; None when it takes it as it is."""
    adapter = TeacherInput(
        student_spec.input_size, student_spec.mean, student_spec.std,
        teacher_spec.input_size, teacher_spec.mean, teacher_spec.std,
        interpolation=teacher_spec.interpolation,
    )
    return None if adapter.is_identity else adapter
