"""ofakd: distil any image classifier into any other, across architecture families.

Public API::

    teacher = ofakd.create_model("deit_tiny_patch16_224", num_classes=100, checkpoint="teacher.pth")
    student = ofakd.create_model("resnet18", num_classes=100)
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, eps=[1.5])
    logits, losses = distiller(images, targets)
    run_folder = ofakd.fit(distiller, train_set, val_set, epochs=30, lr=1e-3)   # any torch Datasets
"""

__version__ = "0.1.0"

from .analysis.stage_cka import cka  # noqa: E402 - after __version__, which modules below read
from .distill import create_distiller, list_methods  # noqa: E402
from .errors import OfakdError  # noqa: E402
from .models import create_model  # noqa: E402

__all__ = ["OfakdError", "cka", "create_distiller", "create_model", "fit", "list_methods"]


def __getattr__(name: str):
    """``ofakd.fit`` (the training engine) is imported on first use: the command line starts without it."""
    if name == "fit":
        from .engine.given_datasets import fit

        return fit
    raise AttributeError(f"module 'ofakd' has no attribute {name!r}")

