"""ofakd: distil any image classifier into any other, across architecture families.

Public API::

    teacher = ofakd.create_model("deit_tiny_patch16_224", num_classes=100, checkpoint="teacher.pth")
    student = ofakd.create_model("resnet18", num_classes=100)
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, eps=[1.5])
    logits, losses = distiller(images, targets)
"""

__version__ = "0.1.0"

from .threads import quiet_waiting_threads  # noqa: E402 - first: before anything loads torch

quiet_waiting_threads()  # OMP_WAIT_POLICY=PASSIVE unless set (see ofakd.threads)

from .analysis.stage_cka import cka  # noqa: E402 - after __version__, which modules below read
from .distill import create_distiller, list_methods  # noqa: E402
from .errors import OfakdError  # noqa: E402
from .models import create_model  # noqa: E402

__all__ = ["OfakdError", "cka", "create_distiller", "create_model", "list_methods"]

