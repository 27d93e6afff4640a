"""The outcome of a tuning: ``best.yaml`` and the best configuration's final run(s), the only ones on the test split.

``best.yaml`` is the recipe the tuning started from with the best trial's method, options and lr: no holdout, the
recipe's own run folder and validation split, so ``ofakd distill --config best.yaml`` trains on every training
image and validates on the test split as any run of that recipe. The final runs are that recipe, one per seed, in
``TUNE/final/s<seed>``; their score is the test top-1 of their last epoch (no epoch is chosen on the test split).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from ..config.load import dump_config, merge, validate
from ..config.schema import RunConfig
from ..run_folder import RunRecord
from ..run_folder.atomic import write_text
from .trial import nest


def best_config(base: RunConfig, trial: FrozenTrial) -> RunConfig:
    """``base`` with the method, options and lr of ``trial`` (the recipe's options for that method kept)."""
    raw = base.to_dict()
    method = trial.params.get("method") or trial.user_attrs["method"]
    recipe = raw["method"] if raw["method"]["name"] == method else {"name": method}
    raw["method"] = merge(recipe, nest(trial.user_attrs.get("options", {})))
    raw["train"]["lr"] = float(trial.user_attrs["lr"])
    return validate(raw)


def write_best(path: Path, cfg: RunConfig, trial: FrozenTrial, header: Sequence[str]) -> Path:
    """``best.yaml``: ``cfg`` as YAML under a comment saying where it comes from."""
    lines = [f"# {line}" for line in header]
    write_text(path, "\n".join(lines) + "\n" + dump_config(cfg))
    return path


def final_runs(best: RunConfig, seeds: Sequence[int], folder: Path, *,
               log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train ``best`` once per seed in ``folder/s<seed>`` (a finished one is read back, a stopped one resumed);
    their summaries."""
    from ..engine import fit

    summaries = []
    for seed in seeds:
        name = f"s{seed}"
        run = RunRecord.at(folder / name)
        done = run.summary() if run.has_summary else {}
        if done.get("complete"):
            summaries.append(done)
            continue
        raw = best.to_dict()
        raw["train"]["seed"] = seed
        raw["run"] = {"out_dir": str(folder), "name": name}
        resume = run.path if run.has_checkpoint else None
        summaries.append(fit(validate(raw), resume=resume, overwrite=resume is None, progress=False,
                             tensorboard=True, log=lambda line, name=name: log(f"final {name}: {line}")))
    return summaries
