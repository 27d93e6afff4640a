"""The tune folder: what a tuning writes, by name (torch-free: ``ofakd report`` asks whether a folder is one).

    TUNE/tune.json        where the study lives (storage, study name): `ofakd report TUNE` reads it
    TUNE/study.db         the study (SQLite), unless --storage names another
    TUNE/teacher-cache/   the teacher's logits over the trials' views (training images less the holdout)
    TUNE/trials/trial-NNNN/   one run folder per trial (scored on the holdout)
    TUNE/best.yaml        the best configuration as a recipe: `ofakd distill --config TUNE/best.yaml`
    TUNE/final/s<seed>/   the final run(s) of best.yaml, the only runs on the test split
    TUNE/report.md, history.png, importance.png
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import OfakdError

TUNE_JSON = "tune.json"
FORMAT = "ofakd-tune"
BEST_YAML = "best.yaml"
TRIALS = "trials"
FINAL = "final"
TEACHER_CACHE = "teacher-cache"
REPORT, HISTORY, IMPORTANCE = "report.md", "history.png", "importance.png"


def is_tune_folder(path: str | Path) -> bool:
    return (Path(path) / TUNE_JSON).is_file()


def write_tune_json(folder: Path, storage: str, study: str) -> None:
    from ..run_folder.atomic import write_json

    write_json(folder / TUNE_JSON, {"format": FORMAT, "storage": storage, "study": study})


def read_tune_json(folder: str | Path) -> dict:
    """``{"storage": ..., "study": ...}`` of a tune folder; a clear error when it is not one."""
    path = Path(folder) / TUNE_JSON
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise OfakdError(f"{folder} is not a tune folder ({TUNE_JSON}: {err}); pass the --out of `ofakd tune`") from None
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        raise OfakdError(f"{path} is not an ofakd tune record; pass the --out of `ofakd tune`")
    return found
