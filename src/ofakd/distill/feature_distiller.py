"""Base of the methods that read teacher features (FitNet, RKD, CRD, CC, RSD).

It asks the student and the teacher for the same kind of features (stage features at the given
``feature_info`` positions; with none, the penultimate embedding) and gives :meth:`probe` for
sizing the method's modules. Such a method needs a live teacher: a logits-only cache cannot serve it.
"""

from __future__ import annotations

from torch import nn

from ..models.tap import ModelOutput
from ..teacher.feature_check import check_features
from .base import Distiller, MethodOptions


class FeatureDistiller(Distiller):
    """A Distiller reading student and teacher features: the stage features at the positions
    :meth:`stage_positions` gives (FitNet), or the penultimate embeddings (RKD, CRD, CC, RSD)."""

    needs_teacher_features = True

    def __init__(self, teacher, student: nn.Module, options: MethodOptions, **kwargs) -> None:
        check_features(type(self), teacher)  # before its model is read: the live teacher, or an error
        student_positions, teacher_positions = self.stage_positions(
            options, student, teacher.model, student_modules=kwargs.get("student_stages"),
            teacher_modules=teacher.tap.modules,
        )
        super().__init__(
            teacher, student, options,
            student_positions=student_positions or (), student_embedding=not student_positions,
            teacher_positions=teacher_positions or (), teacher_embedding=not teacher_positions,
            **kwargs,
        )

    @classmethod
    def stage_positions(
        cls, options: MethodOptions, student: nn.Module, teacher: nn.Module, *,
        student_modules: list[str] | None = None, teacher_modules: list[str] | None = None,
    ) -> tuple[list[int] | None, list[int] | None]:
        """The student's and the teacher's feature positions the method reads (``feature_info`` positions,
        or positions among their named stage ``*_modules``); (None, None): the penultimate embeddings
        instead (the default)."""
        return None, None

    def probe(self) -> tuple[ModelOutput, ModelOutput, tuple[int, int], tuple[int, int]]:
        """Student and teacher outputs for a zero batch at ``input_size`` and the (H, W) each saw."""
        student_out, student_hw = self.student_tap.probe(self.input_size, role="student")
        teacher_out, teacher_hw = self.teacher.probe(self.input_size)
        return student_out, teacher_out, student_hw, teacher_hw
