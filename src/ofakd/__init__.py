"""ofakd: distil any image classifier into any other, across architecture families.

Public API::

    teacher = ofakd.create_model("deit_tiny_patch16_224", num_classes=100, checkpoint="teacher.pth")
    student = ofakd.create_model("resnet18", num_classes=100)
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, eps=[1.5])
    logits, losses = distiller(images, targets)
    run_folder = ofakd.fit(distiller, train_set, val_set, epochs=30, lr=1e-3)   # any torch Datasets
    result = ofakd.tune("demo", teacher_run="runs/digits-teacher", budget=30)   # which method, options, lr
    task = ofakd.timm_task("ofa", teacher=teacher, student=student)             # a timm.task.TrainingTask
    student, info = ofakd.evaluation.load_student(run_folder)                   # subpackages load on first use
"""

__version__ = "0.1.0"

from .threads import quiet_waiting_threads  # noqa: E402 - first: before anything loads torch

quiet_waiting_threads()  # OMP_WAIT_POLICY=PASSIVE unless set (see ofakd.threads)

from .errors import OfakdError  # noqa: E402 - after __version__, which modules below read
from .lazy import lazy_exports  # noqa: E402

SUBPACKAGES = ("analysis", "cache", "config", "data", "distill", "engine", "evaluation", "export", "models",
               "run_folder", "teacher", "tuning")
"""The public subpackages, ``ofakd.NAME`` after a bare ``import ofakd``."""

# imported on first use: `ofakd --help` and `ofakd --version` never import torch
__getattr__, __dir__ = lazy_exports(__name__, {
    ".analysis.stage_cka": ("cka",),
    ".distill": ("create_distiller", "list_methods"),
    ".engine.given_datasets": ("fit",),
    ".engine.timm_task": ("timm_task",),
    ".models": ("create_model",),
    ".tuning.api": ("tune",),
}, SUBPACKAGES)

__all__ = ["OfakdError", "cka", "create_distiller", "create_model", "fit", "list_methods", "timm_task", "tune"]
