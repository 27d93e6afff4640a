"""The run config: one validated tree (pydantic, unknown keys are errors) saved in every run folder.

Each part owns its section: ``data`` and ``augment`` :mod:`ofakd.data.config`, ``student``
:mod:`ofakd.models.model_config`, ``teacher`` :mod:`ofakd.teacher.teacher_config`; here are ``method`` (a name
plus that method's own options, checked against the method's ``Options``), ``train`` (:class:`TrainConfig`) and
``run`` (:class:`RunSection`), and the tree of them all (:class:`RunConfig`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator

from ..data.config import AugmentConfig, DataConfig
from ..models.model_config import ModelConfig
from ..suggest import close_matches
from ..teacher.teacher_config import TeacherConfig

if TYPE_CHECKING:
    from ..distill.method import Method


class MethodConfig(BaseModel):
    """``name`` of a distillation method plus its own options (checked against the method's Options)."""

    model_config = ConfigDict(extra="allow")

    name: str = "ofa"
    """Method: see `ofakd methods` (vanilla, kd, ofa, ...)."""

    _method: Any = PrivateAttr(None)
    """The :class:`~ofakd.distill.method.Method` this section resolves to, once resolved."""

    @property
    def options(self) -> dict[str, Any]:
        """The method options (every key but ``name``)."""
        return dict(self.model_extra or {})

    @property
    def resolved(self) -> Method:
        """The method and its validated options (:func:`~ofakd.distill.method.resolve_method`), resolved once:
        :func:`~ofakd.config.load.validate` resolves it, and the run uses that. Errors name ``method.*`` keys."""
        if self._method is None:
            from ..distill.method import (
                resolve_method,  # on use: the methods import torch (`ofakd --help` does not)
            )

            self._method = resolve_method(self.name, self.options, section="method")
        return self._method

    @classmethod
    def of(cls, method: Method) -> MethodConfig:
        """The section of a resolved method: its name and every option, the method kept with it."""
        section = cls.model_validate(method.to_config())
        section._method = method
        return section


SEED_MAX = 2**32 - 1
"""Largest seed: numpy's generators take 32-bit seeds (and the data seed is used modulo 2**32)."""


class TrainConfig(BaseModel):
    """Optimisation and the training loop."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)
    """Images per process per step: the global batch is batch_size x number of processes (a run resumed on
    another number of processes keeps batch_size, so its global batch changes; the lr is not rescaled)."""
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(0.0, ge=0)
    warmup_epochs: int = Field(0, ge=0)
    warmup_lr: float = Field(1e-5, ge=0)
    """Learning rate at the start of warm-up (linear ramp to lr)."""
    optimizer: str = "adamw"
    """Any timm optimizer name: sgd, adamw, lamb, ..."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """Momentum of the SGD-style optimizers (sgd, momentum, rmsprop, lars, ...), < 1: each step keeps momentum x the
    previous update, so at 1 or more the updates grow without bound. Adam-style optimizers take betas instead: a
    momentum other than the default 0.9 given to one is an error (it would do nothing)."""
    weight_decay: float = Field(0.05, ge=0)
    """Not applied to biases, norm layers and the model's no_weight_decay() parameters (timm convention)."""
    scheduler: Literal["cosine", "step"] = "cosine"
    decay_epochs: float = Field(30, gt=0)
    """step: multiply the lr by decay_rate every decay_epochs."""
    decay_rate: float = Field(0.1, gt=0)
    sched_on_updates: bool = False
    """Update the lr every optimizer step instead of every epoch (smoother for short runs)."""
    clip_grad: float | None = Field(None, gt=0)
    """Clip the global gradient norm to this value; null is off."""
    ema_decay: float | None = Field(None, gt=0, lt=1)
    """Keep an EMA of the student (timm ModelEmaV3) with this decay, evaluated each epoch; null is off."""
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"
    """Mixed precision: auto = bf16 on a GPU that supports it, none on CPU; fp16 needs a GPU."""
    seed: int = Field(42, ge=0, le=SEED_MAX)
    """Seed of the model initialisation."""
    data_seed: int | None = Field(None, ge=0, le=SEED_MAX)
    """Seed of the data order and augmentation; null = the same as seed."""
    log_every: int = Field(50, ge=1)
    """Log a train record every N steps (and the last step of each epoch)."""
    device: str = "auto"
    """auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, ..."""
    threads: int | None = Field(None, ge=1)
    """CPU compute threads per process; null: OMP_NUM_THREADS when set, else the CPUs this process may use
    (affinity mask and cgroup quota) minus data.workers, at least 1."""
    eval_teacher: bool = True
    """Evaluate the teacher on the val split once at the start of a distillation run."""
    checkpoint_every: int | None = Field(None, ge=1)
    """Also save last.pt every N optimizer steps (a SIGKILL then loses at most N steps); null: at epoch ends
    (and on SIGTERM/SIGINT) only."""
    nonfinite: Literal["stop", "skip"] = "stop"
    """A NaN/inf loss or gradient: stop the run naming the step and loss component, or skip that step."""
    max_skipped_steps: int = Field(10, ge=0)
    """With nonfinite: skip, stop once this many steps were skipped in the run."""
    sync_bn: bool = False
    """Several GPU processes: BatchNorm statistics over the global batch (SyncBatchNorm); ignored on CPU."""
    compile: bool = False
    """torch.compile the training forward (student, method modules and losses); the first steps compile."""
    channels_last: bool = False
    """Channels-last memory format for the images and the 4-d weights (faster convolutions on GPUs)."""
    dist_timeout: float = Field(1800.0, gt=0)
    """Seconds a process waits for the others (joining, any collective) before it stops with an error."""

    @field_validator("min_lr")
    @classmethod
    def _min_lr(cls, v: float, info: ValidationInfo) -> float:
        lr = info.data.get("lr")
        if lr is not None and v > lr:
            raise ValueError(f"must not exceed train.lr ({lr:g}): the schedule decays from lr down to min_lr; lower it")
        return v

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: str) -> str:
        from timm.optim import list_optimizers

        known = list_optimizers()
        if v.lower() not in known:
            close = close_matches(v.lower(), known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown timm optimizer {v!r}{hint}; e.g. sgd, adamw, lamb")
        return v.lower()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        import torch

        if v == "auto":
            return v
        try:
            torch.device(v)
        except (RuntimeError, ValueError):
            raise ValueError(f"not a device: {v!r}; use auto, cpu, cuda, cuda:N or mps") from None
        return v


class RunSection(BaseModel):
    """Where the run folder goes."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    """Run folder name under out_dir; default: built from method, models, data set and seed."""
    out_dir: str = "runs"


class RunConfig(BaseModel):
    """Everything a run needs; saved as ``config.yaml`` in the run folder."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    run: RunSection = Field(default_factory=RunSection)

    @property
    def data_seed(self) -> int:
        return self.train.seed if self.train.data_seed is None else self.train.data_seed

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able dict (lists, not tuples), method options inline."""
        return self.model_dump(mode="json")


RESUME_SAFE_KEYS = ("data.root", "data.workers", "data.prefetch", "train.device", "train.log_every",
                    "train.checkpoint_every", "train.nonfinite", "train.max_skipped_steps", "train.compile", "train.channels_last",
                    "train.dist_timeout", "train.threads", "teacher.random_init")
"""Keys that may differ when a run is resumed: they do not change what is computed."""

RESUME_EXTENDS = ("train.epochs",)
"""Keys a resumed run may also change, to train on: more epochs (the schedule is re-planned over the new total)."""


def resume_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config dicts, other than those a resume may change
    (:data:`RESUME_SAFE_KEYS`, :data:`RESUME_EXTENDS`)."""
    return [key for key in _changed_keys(old, new) if key not in (*RESUME_SAFE_KEYS, *RESUME_EXTENDS)]


def edited_keys(recorded: dict[str, Any], on_disk: dict[str, Any], running: dict[str, Any]) -> list[str]:
    """Dotted keys where a run's config file ``on_disk`` differs from the ``recorded`` recipe (its checkpoint's) and
    the ``running`` config takes the file's value (no command-line flag overrode it), other than
    :data:`RESUME_SAFE_KEYS`: an edit of the file that would silently change a resumed run."""
    return [key for key in _changed_keys(recorded, on_disk)
            if key not in RESUME_SAFE_KEYS and lookup(running, key) == lookup(on_disk, key)]


def lookup(tree: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` in nested mappings (None when absent)."""
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys

SECTIONS: dict[str, type[BaseModel]] = {
    "data": DataConfig,
    "augment": AugmentConfig,
    "teacher": TeacherConfig,
    "student": ModelConfig,
    "method": MethodConfig,
    "train": TrainConfig,
    "run": RunSection,
}
