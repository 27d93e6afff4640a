"""Method and option search over an Optuna study, trials on the teacher-output cache (``ofakd tune``).

    result = ofakd.tune("demo", teacher_run="runs/digits-teacher", budget=30, out="tune/digits")
    # ofakd.tune is ofakd.tuning.api.tune

Files: ``api`` (``tune``: the whole tuning), ``space`` (what is searched), ``study`` (storage, sampler, pruner,
settings, budget), ``trial`` (one trial as a run), ``worker`` (the trial loop of one worker), ``final``
(``best.yaml`` and the final runs), ``study_report`` and ``plots`` (``ofakd report TUNE``), ``folder`` (file names).
"""

from ..lazy import lazy_exports

# torch and Optuna load on first use: `ofakd --help` stays light
__getattr__, __dir__ = lazy_exports(__name__, {
    ".api": ("TuneResult", "tune"),
    ".study_report": ("write_tune_report",),
})


__all__ = ["TuneResult", "tune", "write_tune_report"]
