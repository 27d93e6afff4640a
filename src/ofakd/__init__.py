"""ofakd: distil any image classifier into any other, across architecture families.

Public API::

    teacher = ofakd.create_model("deit_tiny_patch16_224", num_classes=100, checkpoint="teacher.pth")
    student = ofakd.create_model("resnet18", num_classes=100)
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, eps=[1.5])
    logits, losses = distiller(images, targets)
"""

from .distill import create_distiller, list_methods
from .errors import OfakdError
from .models import create_model

__version__ = "0.1.0"
__all__ = ["OfakdError", "cka", "create_distiller", "create_model", "list_methods"]


def cka(*args, **kwargs):
    """Linear CKA between the stages of two models; see :func:`ofakd.analysis.stage_cka.cka`."""
    from .analysis.stage_cka import cka as _cka

    return _cka(*args, **kwargs)
