"""What a run leaves on disk, and how it is written: the one place that knows the run-folder format.

    from ofakd.run_folder import RunRecord
    record = RunRecord.at("runs/NAME")                   # the one reader of a run folder
    state = record.checkpoint()                          # last.pt: weights_only=True, CRC-checked
    meta = record.student_metadata()                     # model name, classes, epoch, top-1, ...

Files: ``layout`` (file names, :class:`RunFolder`, safe run names), ``run_record`` (:class:`RunRecord`: a run
folder read back), ``atomic`` (atomic, verified writes and their one-line errors), ``checkpoint`` (``last.pt``:
save, load, resume), ``best_weights`` (``best.safetensors`` and its :class:`StudentMetadata`), ``lock`` (one
writer per folder).

Below the engine, the cache, export and analysis: it imports none of them.
"""

from ..lazy import lazy_exports
from .layout import (
    BEST,
    CONFIG,
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    LAST,
    LOCK,
    METRICS,
    PREVIOUS,
    SUMMARY,
    RunFolder,
    default_name,
    previous_path,
    sanitize_name,
)
from .lock import FolderLock, FolderLocked

# the file names and RunFolder are light; checkpoints and weights import torch and safetensors on use
__getattr__, __dir__ = lazy_exports(__name__, {
    ".atomic": ("WRITE_ERRNOS", "CheckpointWriteError", "atomic_write", "write_error", "write_json", "write_text",
                "writing"),
    ".best_weights": ("StudentMetadata", "WeightsDamaged", "read_student_metadata", "read_weights",
                      "read_weights_metadata", "save_weights"),
    ".checkpoint": ("EMA_PREFIX", "STUDENT_PREFIX", "CheckpointDamaged", "CheckpointRefused", "describe_checkpoint",
                    "file_problem", "load_resume_state", "load_state", "save_state", "strip_prefix"),
    ".run_record": ("RunRecord", "checkpoint_student", "read_metrics", "runs_below", "student_metadata",
                    "weights_file"),
})

__all__ = [
    "BEST",
    "EMA_PREFIX",
    "CONFIG",
    "EXPORT_CONFIG",
    "EXPORT_WEIGHTS",
    "LAST",
    "LOCK",
    "METRICS",
    "PREVIOUS",
    "STUDENT_PREFIX",
    "SUMMARY",
    "WRITE_ERRNOS",
    "CheckpointDamaged",
    "CheckpointRefused",
    "CheckpointWriteError",
    "FolderLock",
    "FolderLocked",
    "RunFolder",
    "RunRecord",
    "StudentMetadata",
    "WeightsDamaged",
    "atomic_write",
    "checkpoint_student",
    "default_name",
    "describe_checkpoint",
    "file_problem",
    "load_resume_state",
    "load_state",
    "read_metrics",
    "previous_path",
    "read_student_metadata",
    "read_weights",
    "read_weights_metadata",
    "runs_below",
    "sanitize_name",
    "save_state",
    "save_weights",
    "strip_prefix",
    "student_metadata",
    "write_error",
    "write_json",
    "write_text",
    "weights_file",
    "writing",
]
