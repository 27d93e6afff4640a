"""The one check that a method reading teacher features has a teacher that gives them.

A method that reads the teacher's stage features or embedding (FitNet, RKD, CRD, CC, RSD, PAT:
``needs_teacher_features``) needs the live teacher; a teacher-output cache records logits only. Every path that
could pair them (a distiller built or given another teacher, ``--teacher-cache``, ``ofakd.fit(teacher_cache=)``
before it records) asks :func:`check_features`, and the answer is one :class:`~ofakd.errors.TeacherFeaturesError`.
"""

from __future__ import annotations

from ..errors import TeacherFeaturesError

FIX = "run it with a live teacher model (drop --teacher-cache, or leave teacher_cache= out)"


def check_features(method, source) -> None:
    """Raise when ``method`` (a Distiller, its class or a resolved Method) reads teacher features and ``source``
    (a teacher source, or its class before one is made; None: no teacher) cannot give them."""
    if method.needs_teacher_features and not getattr(source, "gives_features", False):
        raise features_error(method.method_name)


def features_error(method_name: str, detail: str = "") -> TeacherFeaturesError:
    """The error of a method that reads teacher features without them (``detail``: which ones it reads)."""
    return TeacherFeaturesError(f"method {method_name!r} needs teacher features{detail} that a logits-only teacher "
                                f"(a teacher-output cache, or none) cannot give: {FIX}")
