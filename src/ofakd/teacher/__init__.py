"""The teacher: one call that returns its output for a student batch, live or replayed from a cache.

* :class:`~ofakd.teacher.protocol.TeacherSource` — the call a Distiller makes, and what a run asks of its teacher
  (its data epoch, its start, its view's normalisation): the source owns its behaviour;
* :mod:`~ofakd.teacher.given_teacher` — a teacher given as a model made the live teacher (the one place that tells them
  apart);
* :mod:`~ofakd.teacher.feature_check` — the one check that a method reading teacher features has a teacher giving them;
* :class:`~ofakd.teacher.live.LiveTeacher` — the model run live (frozen, its own input view and precision);
* :mod:`~ofakd.teacher.run_teacher` — a run's live teacher from its config (engine and cache recorder);
* :class:`~ofakd.teacher.teacher_config.TeacherConfig` — the ``teacher:`` section of a run config (light: no torch);
* :class:`~ofakd.teacher.input_view.TeacherInput` — the student batch re-normalised and resized for it;
* :class:`~ofakd.teacher.data_view.DataView` — the same for batches given in Python, from the teacher's own
  pretrained config and the data's normalisation (``create_distiller``, ``ofakd.fit``).

The replayed teacher is :class:`ofakd.cache.cached_teacher.CachedTeacher`.
"""

from ..lazy import lazy_exports
from .teacher_config import TeacherConfig

__getattr__, __dir__ = lazy_exports(__name__, {
    ".data_view": ("DataView",),
    ".input_view": ("TeacherInput", "teacher_adapter"),
    ".live": ("LiveTeacher", "freeze_teacher"),
    ".protocol": ("TeacherSource",),
    ".given_teacher": ("as_source", "teacher_model"),
})

__all__ = ["DataView", "LiveTeacher", "TeacherConfig", "TeacherInput", "TeacherSource", "as_source", "freeze_teacher",
           "teacher_adapter", "teacher_model"]
