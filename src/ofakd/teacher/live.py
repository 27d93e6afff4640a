"""The teacher run live: frozen, fed its own view of the student's batch, in its own precision.

:class:`LiveTeacher` owns everything about the teacher's forward, so that a live run and a recording
for the teacher-output cache (``ofakd cache record``) compute exactly the same logits:

* the model, frozen in place: eval mode, no gradients, each BatchNorm that follows a plain
  convolution folded into it (:mod:`ofakd.models.fold_batchnorm`), channels-last weights;
* its input view: the student's batch re-normalised and resized for the teacher
  (:class:`~ofakd.teacher.input_view.TeacherInput`; for batches given in Python,
  :class:`~ofakd.teacher.data_view.DataView`), in channels-last memory format;
* its precision: an autocast mode of its own (``none``, ``bf16``, ``fp16``; None keeps the caller's)
  and optionally bfloat16 weights;
* its feature tap: the stage features and embedding the methods asked for (:meth:`require`), by timm's
  ``feature_info`` or, for any nn.Module, by named stage modules (``stage_modules``).

The outputs are plain float32 copies (inference tensors cannot be saved for backward). A method that
trains modules inside the frozen teacher (PAT's prompts) runs it once more through
:meth:`LiveTeacher.forward_adapted`: same view and precision, autograd on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..autocast import autocast
from ..models.fold_batchnorm import fold_batchnorm
from ..models.info import num_classes, num_features
from ..models.input_adapters import Adapter, adapted_inputs
from ..models.tap import ModelOutput, ModelTap
from ..run_folder.digest import tensors_sha256
from .data_view import DataView


def freeze_teacher(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Freeze ``model`` for inference, in place: eval mode, no gradients, BatchNorms folded into their
    convolutions, channels-last weights. Its state dict then lacks the folded BatchNorms' entries: hash
    or save the teacher before handing it over."""
    model.eval().requires_grad_(False)
    fold_batchnorm(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


class LiveTeacher(nn.Module):
    """``teacher(images, sample_indices=None) -> ModelOutput``: the teacher's forward on a student batch.

    ``input_view`` maps the student's batch to the teacher's input (None: as it is); ``amp`` is the
    forward's autocast mode (None: the caller's); ``dtype`` the weights' (bfloat16 halves memory and
    needs a bf16 forward); ``stage_modules`` the names of its four stage modules when it has no timm
    ``feature_info`` (see :class:`~ofakd.models.tap.ModelTap`). The model is frozen in place (see
    :func:`freeze_teacher`).
    """

    gives_features = True

    def __init__(
        self,
        model: nn.Module,
        *,
        input_view: Callable[[torch.Tensor], torch.Tensor] | None = None,
        amp: str | None = None,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = True,
        stage_modules: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.model = freeze_teacher(model, channels_last)
        if dtype != torch.float32:
            self.model.to(dtype)
        self.input_view = input_view  # a submodule when it is one: its buffers follow .to()
        self.amp = amp
        self.channels_last = channels_last
        self.tap = ModelTap(self.model, modules=stage_modules)
        self._weights_sha256: str | None = None

    def weights_sha256(self) -> str:
        """sha256 of the teacher's weights (names, shapes, dtypes, bytes): what a run records, to find another
        teacher given to its resume or to another torchrun process. Computed once: the teacher is frozen."""
        if self._weights_sha256 is None:
            self._weights_sha256 = tensors_sha256(self.model.state_dict())
        return self._weights_sha256

    @property
    def num_classes(self) -> int:
        return num_classes(self.model)

    @property
    def num_features(self) -> int:
        return num_features(self.model)

    def require(self, positions: Sequence[int] = (), *, embedding: bool = False) -> None:
        self.tap.widen(positions, embedding=embedding)

    def check_input(self) -> None:
        """Raise when the input view cannot give the teacher what it expects yet (a :class:`DataView` that does
        not know the data's normalisation, where it matters); the error names the fix."""
        if isinstance(self.input_view, DataView):
            self.input_view.check()

    def normalised_with(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """The batches are normalised with ``mean``/``std``: a :class:`DataView` re-normalises from it to what the
        teacher expects (any other view was built knowing the data's normalisation)."""
        if isinstance(self.input_view, DataView):
            self.input_view.normalised_with(mean, std)

    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The teacher's logits for a batch: it scores on validation images as on training ones."""
        return self.logits

    def run_note(self) -> str:
        return f"teacher amp {self.amp}"

    def view(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's input for a student batch: the input view, channels-last."""
        x = self.input_view(images) if self.input_view is not None else images
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def probe(self, input_size: Sequence[int]) -> tuple[ModelOutput, tuple[int, int]]:
        param = next(self.model.parameters(), None)
        device_type = param.device.type if param is not None else "cpu"
        with self._autocast(device_type):
            return self.tap.probe(input_size, self.view, role="teacher")

    def _autocast(self, device_type: str):
        """The forward's autocast: its own mode, or the caller's context when it has none."""
        return autocast(self.amp or "none", device_type, inherit=self.amp is None)

    def data_epoch(self, epoch: int) -> int:
        """``epoch``: a live teacher sees whatever views the epoch draws."""
        return epoch

    def start_epoch(self, epoch: int, step: int = 0) -> None:
        """Nothing to do: a live teacher computes each batch as it comes."""

    def forward(self, images: torch.Tensor, sample_indices: torch.Tensor | None = None) -> ModelOutput:
        self.check_input()
        x = self.view(images)
        with torch.inference_mode(), self._autocast(x.device.type):
            out = self.tap(x)
        return ModelOutput(
            logits=out.logits.float().clone(),
            features={p: f.clone() for p, f in out.features.items()},
            embedding=out.embedding.clone() if out.embedding is not None else None,
        )

    def forward_adapted(self, images: torch.Tensor, adapters: Sequence[tuple[str, Adapter]]) -> ModelOutput:
        """The teacher's output on a student batch with autograd on and the input of each named module passed
        through its adapter first (:func:`~ofakd.models.input_adapters.adapted_inputs`; PAT's prompts): the
        weights stay frozen, gradients reach the adapters. Same input view, precision and tap as :meth:`forward`;
        the outputs are the tap's own tensors (they carry the graph)."""
        self.check_input()
        x = self.view(images)
        with self._autocast(x.device.type), adapted_inputs(self.model, adapters):
            return self.tap(x)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for a student batch (float32)."""
        return self(images).logits

    def train(self, mode: bool = True) -> LiveTeacher:
        """A teacher stays in eval mode."""
        super().train(False)
        return self
