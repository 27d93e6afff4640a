"""The Distiller base class: one nn.Module per method, ``forward -> (student_logits, losses)``.

A Distiller owns the student and the method's own trainable modules (``branches``:
OFA branches, FitNet projectors, CRD embedders, ...). The teacher is a teacher source
(:mod:`ofakd.teacher`: the model run live, or a cache's replay of it), held *outside*
the module tree: it never appears in ``parameters()``, ``state_dict()`` or a DDP
wrapper, and a live one follows the distiller on ``.to(device)``. Per step the
distiller calls the teacher once and the student once (through a :class:`ModelTap`
that gives the stage features and embedding the method asked for), adds the ``gt``
term, and asks the method for its own terms (``compute_losses``). A method file knows
nothing of the engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator
from torch import nn

from ..errors import ConfigError
from ..models.tap import ModelOutput, ModelTap
from ..pydantic_errors import problem
from ..teacher.data_view import data_normalisation
from ..teacher.feature_check import check_features, features_error
from ..teacher.given_teacher import check_source
from ..teacher.protocol import TeacherSource
from .search import Dimension, Range
from .targets import ground_truth_loss


def _check_stages(value: list[int]) -> list[int]:
    if not value or any(s not in (1, 2, 3, 4) for s in value) or len(set(value)) != len(value):
        raise ValueError(f"stages must be distinct values among 1, 2, 3, 4; got {value}")
    return sorted(value)


Stages = Annotated[list[int], AfterValidator(_check_stages)]
"""Option type for a method's stages: distinct values among 1-4, sorted."""


def _check_loss_weight(value: float) -> float:
    if value < 0:
        raise ValueError("a loss weight must be >= 0 (0 turns the term off)")
    return value


TEMPERATURE_FLOOR = 0.01
"""The lowest softmax temperature accepted: below it softmax(z / T) is one-hot for any logits a network gives
(a difference of 0.5 between two logits becomes 50) and z / T overflows half precision."""


def _check_temperature(value: float) -> float:
    if value < TEMPERATURE_FLOOR:
        raise ValueError(f"a softmax temperature must be >= {TEMPERATURE_FLOOR} (below it the softmax is one-hot for "
                         "any logits; 1 is the plain softmax, larger softens it)")
    return value


LossWeight = Annotated[float, AfterValidator(_check_loss_weight)]
"""Option type for the weight of a loss term: >= 0."""
Temperature = Annotated[float, AfterValidator(_check_temperature)]
"""Option type for a softmax temperature T: > 0 (the logits are divided by it)."""


class MethodOptions(BaseModel):
    """Options every method has. Subclass per method; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    gt_weight: LossWeight = 1.0
    """Weight of the cross-entropy to the ground-truth (or mixed / smoothed) targets."""
    gt_loss: Literal["ce", "bce"] = "ce"
    """Supervised loss: ce (cross-entropy) or bce (binary cross-entropy, the 'stronger' ImageNet recipe)."""

    @model_validator(mode="after")
    def _something_to_learn(self) -> MethodOptions:
        weights = [name for name, field in type(self).model_fields.items()
                   if any(getattr(m, "func", None) is _check_loss_weight for m in field.metadata)]
        if weights and all(getattr(self, name) == 0 for name in weights):
            raise ValueError(f"every loss weight is 0 ({', '.join(weights)}): the student would learn nothing; "
                             "give at least one a weight > 0")
        return self

    search_space: ClassVar[dict[str, Dimension]] = {}
    """What ``ofakd tune`` tries for the method's key options (:mod:`~ofakd.distill.search`); the learning rate
    is always searched. A subclass inherits its parent's, or declares its own beside its options."""


WEIGHT = Range(0.25, 4.0, log=True)
"""The search range of a loss weight whose default is 1: a factor of 4 either way."""
TEMPERATURE = Range(1.0, 8.0, log=True)
"""The search range of a softmax temperature (KD's usual 1-8)."""


class Distiller(nn.Module):
    """Base of every method. Subclasses set the class attributes and implement ``compute_losses``."""

    method_name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    """One line for ``ofakd methods``."""
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    needs_teacher: ClassVar[bool] = True
    needs_teacher_features: ClassVar[bool] = False
    """True when the method needs teacher stage features or embedding (it then cannot use a logits-only cache)."""
    needs_sample_indices: ClassVar[bool] = False
    """True when ``forward`` needs ``sample_indices`` (dataset indices of the batch), e.g. CRD."""
    solo_reason: ClassVar[str] = ""
    """Why the method cannot be part of a combination (``a+b``); empty when it can."""

    def __init__(
        self,
        teacher: TeacherSource | None,
        student: nn.Module,
        options: MethodOptions,
        *,
        input_size: tuple[int, int, int] | None = None,
        num_samples: int | None = None,
        student_positions: Sequence[int] = (),
        student_embedding: bool = False,
        teacher_positions: Sequence[int] = (),
        teacher_embedding: bool = False,
        student_stages: Sequence[str] | None = None,
    ) -> None:
        """``teacher``: a teacher source (:mod:`ofakd.teacher`: the model run live, or a cache's replay of it; a
        model becomes one in :func:`~ofakd.distill.create_distiller`), or None when the teacher's outputs are
        given to :meth:`distill`. The method reads the student's and the teacher's stage features at
        ``*_positions`` (``feature_info`` positions, or positions among ``student_stages``, the names of four
        stage modules of a model without timm's ``feature_info``; the teacher's are its source's) and their
        penultimate embeddings when ``*_embedding``."""
        super().__init__()
        self.options = options
        self.student = student
        self.branches = nn.Module()
        """The method's own trainable modules (OFA branches, projectors, ...); subclasses replace it."""
        self.input_size = input_size
        self.num_samples = num_samples
        self.normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        """(mean, std) the batches are normalised with, once given (:meth:`normalised_with`); None: unknown."""
        self.teacher_positions = list(teacher_positions)
        self.teacher_embedding = teacher_embedding
        self.replace_teacher(teacher)
        self.student_tap = ModelTap(student, student_positions, embedding=student_embedding, modules=student_stages)

    # ---- the teacher, held outside the module tree -------------------------------
    def replace_teacher(self, teacher: TeacherSource | None) -> None:
        """Call ``teacher`` from now on (e.g. a cache's replay of the live teacher, and back); it must give what
        the method reads (a logits-only source refuses a feature method, naming the fix)."""
        check_source(teacher)
        if self.teacher_positions or self.teacher_embedding:
            check_features(self, teacher)
            teacher.require(self.teacher_positions, embedding=self.teacher_embedding)
        self.__dict__["teacher"] = teacher  # outside the module tree: never trained, never in state_dict()

    def normalised_with(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """The batches this distiller is fed are normalised with ``mean``/``std`` (what the data's transforms do;
        one value per channel, or one for all): recorded, and a live teacher's
        :class:`~ofakd.teacher.data_view.DataView` re-normalises from it to what the teacher expects. The data
        have one normalisation: another one than given before is an error."""
        given = data_normalisation(mean, std, self.input_size[0] if self.input_size else len(mean or ()))
        if self.normalisation is not None and given != self.normalisation:
            raise ConfigError(
                f"the data were said to be normalised with mean {list(self.normalisation[0])} std "
                f"{list(self.normalisation[1])}, now with mean {list(given[0])} std {list(given[1])}; pass the same "
                "mean=/std= to create_distiller and ofakd.fit (or give them once)"
            )
        if self.teacher is not None:
            self.teacher.normalised_with(*given)
        self.normalisation = given

    def _apply(self, fn, recurse=True):  # noqa: D401 - nn.Module hook
        """Move or cast a live teacher together with the distiller."""
        if isinstance(self.teacher, nn.Module):
            self.teacher._apply(fn, recurse)
        return super()._apply(fn, recurse)

    # ---- forward -----------------------------------------------------------------
    def forward(
        self, images: torch.Tensor, targets: torch.Tensor, *, sample_indices: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Student logits and a dict of weighted scalar losses (their sum is the training loss).

        ``targets`` are class indices (B,) or soft rows (B, K) from mixup/cutmix/smoothing. The teacher
        (live or from a cache) gives its output for this batch; then :meth:`distill`.
        """
        if self.needs_sample_indices and sample_indices is None:
            raise ConfigError(f"method {self.method_name!r} needs the dataset indices of the batch (sample_indices)")
        teacher = None
        if self.needs_teacher:
            if self.teacher is None:
                raise ConfigError(
                    f"method {self.method_name!r} has no teacher: pass teacher= to create_distiller, or give the "
                    "teacher's output to distiller.distill(images, targets, ModelOutput(teacher_logits))"
                )
            teacher = self.teacher(images, sample_indices)
        return self.distill(images, targets, teacher, sample_indices=sample_indices)

    def distill(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        teacher: ModelOutput | None,
        *,
        sample_indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The student's forward and every loss against the given teacher output (what :meth:`forward`
        does once it has the teacher's): ``gt`` and the method's terms, already weighted."""
        if self.needs_teacher:
            self._check_teacher_output(teacher)
        student = self.student_tap(images)
        losses = {"gt": self.gt_loss(student.logits, targets)}
        losses.update(self.compute_losses(student, targets, teacher, sample_indices))
        return student.logits, losses

    def compute_losses(
        self,
        student: ModelOutput,
        targets: torch.Tensor,
        teacher: ModelOutput | None,
        sample_indices: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """The method's weighted loss terms (``gt`` is added by the base) from one student forward
        (``student.logits``, and the features/embedding the method asked for) and the teacher's output."""
        raise NotImplementedError

    def _check_teacher_output(self, teacher: ModelOutput | None) -> None:
        missing = teacher is None or any(p not in teacher.features for p in self.teacher_positions) or (
            self.teacher_embedding and teacher.embedding is None
        )
        if missing:
            raise features_error(self.method_name, f" (stages {self.teacher_positions}"
                                                   f"{', embedding' if self.teacher_embedding else ''})")

    # ---- helpers -----------------------------------------------------------------
    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The student's and the method's own parameters (never the teacher's)."""
        return (p for p in self.parameters() if p.requires_grad)

    def gt_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The weighted supervised term ``gt_weight · loss(logits, targets)`` (``gt_loss``: ce or bce)."""
        return self.options.gt_weight * ground_truth_loss(logits, targets, self.options.gt_loss)

    def on_step_end(self) -> None:
        """Hook the engine calls after each optimizer step (e.g. momentum updates). Default: nothing."""

    def before_checkpoint(self) -> None:
        """Hook every process calls just before the main process saves the run's state (collectives allowed), e.g.
        to gather what each process keeps for itself into what is saved (PAT's feedback). Default: nothing."""

    def data_epoch(self, epoch: int) -> int:
        """The epoch of data views training epoch ``epoch`` (0-based) draws: the teacher's say (a cache replays its
        recorded epochs), else ``epoch``."""
        return self.teacher.data_epoch(epoch) if self.teacher is not None else epoch

    def start_epoch(self, epoch: int, *, step: int = 0) -> None:
        """The engine starts epoch ``epoch`` (0-based) at ``step`` (a resume inside it): the method's
        :meth:`set_epoch`, and the teacher positioned at the data epoch it serves."""
        self.set_epoch(epoch)
        if self.teacher is not None:
            self.teacher.start_epoch(self.data_epoch(epoch), step)

    def set_epoch(self, epoch: int) -> None:
        """Hook the engine calls at the start of each epoch (0-based), also after a resume.

        For methods with epoch-dependent terms (e.g. DKD's warm-up). Default: nothing.
        """

    @classmethod
    def parse_options(cls, options: dict, *, section: str = "") -> MethodOptions:
        """Validate ``options`` against ``cls.Options``; errors name the field and the fix (``section``: the config
        section they were read from, which then prefixes the field: ``method.eps``)."""
        try:
            return cls.Options(**options)
        except ValidationError as err:
            if section:
                raise ConfigError(problem(err, cls.Options, f"{section}.")) from None
            raise ConfigError(f"method {cls.method_name!r}: {problem(err, cls.Options)}") from None
