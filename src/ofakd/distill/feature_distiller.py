"""Base of the methods that read teacher features (FitNet, RKD, CRD, CC, RSD).

It gives a method a student tap and a teacher tap (:class:`~ofakd.distill.taps.FeatureTap`)
over the stages it asks for, and a ``run_teacher`` whose single teacher forward fills
``TeacherOutput.features`` *and* ``TeacherOutput.embedding`` (the penultimate embedding).
Such a method needs a live teacher: a logits-only teacher cache cannot serve it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ModelError
from .base import Distiller, MethodOptions, TeacherOutput
from .taps import FeatureTap, TapOutput, probe_features, teacher_forward


class FeatureDistiller(Distiller):
    """A Distiller with ``self.student_tap`` / ``self.teacher_tap`` FeatureTaps.

    ``student_stages`` / ``teacher_stages`` are ``feature_info`` positions (see
    :func:`~ofakd.distill.taps.stage_positions`); None selects only the head input, which
    is all an embedding-only method (RKD, CRD, CC, RSD) needs.
    """

    needs_teacher_features = True

    def __init__(
        self,
        teacher: nn.Module | None,
        student: nn.Module,
        options: MethodOptions,
        *,
        student_stages: Sequence[int] | None = None,
        teacher_stages: Sequence[int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(teacher, student, options, **kwargs)
        if teacher is None:
            raise ModelError(
                f"method {self.method_name!r} needs teacher features: give a teacher model "
                "(a logits-only teacher cache cannot serve it)"
            )
        self.student_tap = FeatureTap(student, student_stages) if student_stages else FeatureTap.embedding_only(student)
        self.teacher_tap = FeatureTap(teacher, teacher_stages) if teacher_stages else FeatureTap.embedding_only(teacher)

    def probe(self) -> tuple[TapOutput, TapOutput, tuple[int, int], tuple[int, int]]:
        """Student and teacher outputs for a zero batch at ``input_size`` and the (H, W) each saw."""
        student_out, student_hw = probe_features(self.student_tap, self.input_size, role="student")
        teacher_out, teacher_hw = probe_features(
            self.teacher_tap, self.input_size, self.teacher_input, role="teacher"
        )
        return student_out, teacher_out, student_hw, teacher_hw

    def run_teacher(self, images: torch.Tensor) -> TeacherOutput:
        """Teacher logits, stage features and penultimate embedding from one forward, no autograd."""
        return teacher_forward(self.teacher_tap, images, self.teacher_input)

