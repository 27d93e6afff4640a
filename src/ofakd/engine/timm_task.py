"""Any ofakd method inside timm's task API (``timm.task``, timm >= 1.0.23): a :class:`DistillerTask` is a
``timm.task.TrainingTask`` whose forward is a distiller's, so timm's ``train.py`` loop, optimizer, EMA, checkpoints
and DDP train OFA, DKD, DIST, ... as they train timm's own ``LogitDistillationTask``::

    task = ofakd.timm_task("ofa", teacher=teacher, student=student, eps=[1.5])   # any create_distiller arguments
    optimizer = timm.optim.create_optimizer_v2(task.get_trainable_module(), opt="adamw", lr=1e-3)
    task.prepare_distributed(device_ids=[local_rank])                            # under torchrun: DDP
    result = task(images, targets)      # {"loss", "output", "gt_loss", "kd_loss", "ofa_s1_loss", ...}
    result["loss"].backward()

The trainable module is the distiller: the student and the method's branches, never the teacher (a teacher
source outside the module tree: the model run live, or a teacher-output cache's replay). timm's evaluation and
checkpoints get the bare student (:meth:`DistillerTask.get_eval_model`); the branches travel as the task's state.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from timm.task import TrainingTask
from timm.utils import ModelEmaV3, unwrap_model
from torch import nn

from ..distill import create_distiller
from ..distill.base import Distiller
from ..teacher.protocol import TeacherSource


class DistillerTask(TrainingTask):
    """A timm ``TrainingTask`` that trains ``distiller``: ``task(input, target)`` returns ``loss`` (the sum of the
    distiller's weighted terms), ``output`` (the student's logits) and each term as ``<term>_loss``.

    ``distiller.set_epoch(epoch)`` (DKD's warm-up) and ``distiller.on_step_end()`` (CRD's memory) are the loop's
    to call where a method uses them; timm's ``train.py`` calls neither."""

    def __init__(self, distiller: Distiller, *, device: torch.device | None = None, dtype: torch.dtype | None = None,
                 verbose: bool = True) -> None:
        super().__init__(device=device, dtype=dtype, verbose=verbose)
        self.trainable_module = distiller

    @property
    def distiller(self) -> Distiller:
        """The distiller itself (``trainable_module`` may be its DDP wrapper, or compiled)."""
        return unwrap_model(self.trainable_module)

    def forward(self, input: torch.Tensor, target: torch.Tensor,
                sample_indices: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits, losses = self.trainable_module(input, target, sample_indices=sample_indices)
        return {"loss": sum(losses.values()), "output": logits, **{f"{name}_loss": v for name, v in losses.items()}}

    def prepare_distributed(self, device_ids: list | None = None, **ddp_kwargs) -> DistillerTask:
        """Wrap the distiller (student and branches) in DistributedDataParallel; the teacher stays outside it."""
        from torch.nn.parallel import DistributedDataParallel

        self.trainable_module = DistributedDataParallel(self.trainable_module, device_ids=device_ids, **ddp_kwargs)
        return self

    def setup_ema(self, decay: float = 0.9999, use_warmup: bool = False, device: torch.device | None = None,
                  **kwargs) -> nn.Module:
        """An EMA (timm's ``ModelEmaV3``) of the student and the branches; the teacher is not copied into it."""
        without_teacher = copy.deepcopy(self.distiller, memo={id(self.distiller.teacher): None})
        self.trainable_module_ema = ModelEmaV3(without_teacher, decay=decay, use_warmup=use_warmup, device=device,
                                               **kwargs)
        return self.trainable_module_ema

    def get_eval_model(self, module: nn.Module | None = None, ema: bool = False) -> nn.Module | None:
        """The bare student (of the EMA copy with ``ema``): what timm validates and saves as ``state_dict``."""
        resolved = super().get_eval_model(module=module, ema=ema)
        inner = unwrap_model(resolved) if resolved is not None else None
        return inner.student if isinstance(inner, Distiller) else resolved

    def get_task_state(self, module: nn.Module | None = None, ema: bool = False) -> dict[str, Any]:
        """The method's branches (OFA's, FitNet's projectors, ...), saved beside the student."""
        trainable = module if module is not None else self.get_trainable_module(ema=ema)
        if trainable is None:
            return {}
        branches = unwrap_model(trainable).branches.state_dict()
        return {"branches": branches} if branches else {}

    def load_task_state(self, state: dict[str, Any] | None, strict: bool = True, module: nn.Module | None = None,
                        ema: bool = False) -> None:
        if not state or "branches" not in state:
            return
        trainable = module if module is not None else self.get_trainable_module(ema=ema)
        unwrap_model(trainable).branches.load_state_dict(state["branches"], strict=strict)


def timm_task(
    method: str,
    teacher: nn.Module | TeacherSource | None = None,
    student: nn.Module | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    verbose: bool = True,
    **distiller_args,
) -> DistillerTask:
    """A :class:`DistillerTask` for ``method`` (any ofakd method, with its options) from ``teacher`` to ``student``:
    :func:`~ofakd.distill.create_distiller` with the same arguments. The batches are taken to be normalised as
    timm's data config for the student normalises them (its ``pretrained_cfg`` mean/std, as timm's own distillation
    tasks assume) unless ``mean``/``std`` say otherwise; the teacher sees them re-normalised to its own."""
    if mean is None and std is None and student is not None:
        cfg = getattr(unwrap_model(student), "pretrained_cfg", None) or {}
        mean, std = cfg.get("mean"), cfg.get("std")
    distiller = create_distiller(method, teacher=teacher, student=student, mean=mean, std=std, **distiller_args)
    if device is not None or dtype is not None:
        distiller.to(device=device, dtype=dtype)
    return DistillerTask(distiller, device=device, dtype=dtype, verbose=verbose)
