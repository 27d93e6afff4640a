"""Training engine: the loop, evaluation, checkpoints, run folders, AMP, EMA, logging.

    from ofakd.config import load_config
    from ofakd.engine import fit
    summary = fit(load_config("demo", [("student.name", "resnet18")]))

The engine knows nothing of a particular method: it calls ``distiller(images, targets)`` and sums
the returned losses. Files: ``build`` (config -> models, data, distiller), ``loop`` (one epoch),
``evaluate``, ``checkpoint`` (atomic saves), ``run_folder``, ``metrics_log``, ``progress``,
``optim``, ``precision``, ``seeding``, ``state``, ``teacher_input``, ``trainer`` (orchestration).
"""

from .dist import DistContext
from .evaluate import evaluate
from .teacher_input import TeacherInput, build_teacher_input
from .trainer import Trainer, fit, run_name

__all__ = ["DistContext", "TeacherInput", "Trainer", "build_teacher_input", "evaluate", "fit", "run_name"]
