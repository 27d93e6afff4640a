"""What the converged grid costs, from the wall times its records carry.

Every student record holds ``wall_time_s``: one worker process, one thread, from the start of the run to its
test-set evaluation. Summed per part of the grid (each regime, the ablation, the successors), that is what the
finished runs cost. A run not yet recorded is estimated as the median of the recorded runs of the same regime and
variant (a median, so that a run slowed by a busy machine does not set the estimate) — of the same pair when it has
some, else of the same teacher (a method that runs the teacher with autograd, like PAT, costs what its teacher
costs), else of any pair; else as the low regime's runs of that variant, chosen the same way, scaled by the ratio
of training image-epochs (``images x epochs``); else, for the ablation's OFA variants and the successors, as the
low regime's OFA runs times the variant's step cost relative to OFA (:data:`converged.COST_FACTOR`, 1 when not
listed); else as the part's median run (the low regime's, scaled, when the part has none). The same with each
kind's fastest recorded run for the median gives the cost at the pace of an idle core, as near as the records come
to one. Core-hours: one worker is one core.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from converged import (
    ABLATION,
    ABLATION_REGIME,
    COST_FACTOR,
    PAIRS,
    SUCCESSORS,
    TEACHERS,
    VARIANTS,
    Regime,
    Size,
    record_folder,
    runs_elsewhere,
    student_cell,
    teacher_cell,
)
from records import Store, digest

FULL_TRAIN_IMAGES = 60_000


def image_epochs(regime: Regime) -> int:
    return (regime.train_subset or FULL_TRAIN_IMAGES) * regime.epochs


def _parts(size: Size, ablation: bool, successors: bool) -> list[tuple[str, Regime, tuple]]:
    """(name, regime, variants) of every part of the grid asked for."""
    parts = [(f"regime `{r.key}`", r, VARIANTS) for r in size.regimes]
    low = next(r for r in size.regimes if r.key == ABLATION_REGIME)
    parts += [("ablation", low, ABLATION)] if ablation else []
    parts += [("successors", low, SUCCESSORS)] if successors else []
    return parts


def _runs(store: Store, size: Size, regime: Regime, variants: tuple) -> dict[tuple, float | None]:
    """Every distinct run of one part -> its recorded wall time in seconds, None when not recorded yet."""
    runs = {}
    for variant in variants:
        for pair in size.pairs:
            if runs_elsewhere(size, pair, variant):
                continue
            for seed in size.seeds:
                cell = digest(student_cell(size, regime, pair, variant, seed))
                record = store.run(regime.key, record_folder(pair, variant.key), variant.key, seed, cell_digest=cell)
                wall = record.get("wall_time_s") if record else None
                runs[(variant.key, pair, seed)] = float(wall) if isinstance(wall, (int, float)) else None
    return runs


PACES = {"left_h": statistics.median, "left_fastest_h": min}
"""How recorded wall times become an estimate: their median (the machine as it was), and the fastest recorded run
of each kind (the closest the records come to an idle core)."""


def grid_cost(store: Store, size: Size, ablation: bool = False, successors: bool = False) -> dict:
    """Per part: runs recorded of all, measured core-hours, estimated core-hours still to run at each of
    :data:`PACES`; and the teachers'."""
    low = next(r for r in size.regimes if r.key == ABLATION_REGIME)
    parts = _parts(size, ablation, successors)
    measured = {name: _runs(store, size, regime, variants) for name, regime, variants in parts}
    low_runs = measured[parts[0][0]]
    low_walls = [wall for wall in low_runs.values() if wall is not None]
    rows = []
    for name, regime, variants in parts:
        runs = measured[name]
        done = [wall for wall in runs.values() if wall is not None]
        row = {"part": name, "runs": len(runs), "recorded": len(done), "measured_h": sum(done) / 3600}
        for key, pace in PACES.items():
            estimate = Estimate(regime, low, _paced(runs, pace), _paced(low_runs, pace),
                                pace(done) if done else None, pace(low_walls) if low_walls else None,
                                of_ofa=variants is not VARIANTS)
            row[key] = sum(estimate(variant, pair) for (variant, pair, _), wall in runs.items() if wall is None) / 3600
        rows.append(row)
    teachers = []
    for teacher in TEACHERS.values():
        wall = (store.teacher(teacher.key, digest(teacher_cell(size, teacher))) or {}).get("wall_time_s")
        teachers.append({"teacher": teacher.key, "measured_h": wall / 3600 if isinstance(wall, (int, float)) else None})
    return {"parts": rows, "teachers": teachers}


def _keys(variant: str, pair: str) -> tuple:
    """The groups a run's wall time counts in, most specific first: its cell's pair, its teacher, its variant."""
    return (variant, pair), (variant, PAIRS[pair][0]), variant


def _paced(runs: dict[tuple, float | None], pace: Callable[[list[float]], float]) -> dict:
    """Recorded wall times aggregated by ``pace`` within every group of :func:`_keys`."""
    walls: dict = {}
    for (variant, pair, _), wall in runs.items():
        if wall is not None:
            for key in _keys(variant, pair):
                walls.setdefault(key, []).append(wall)
    return {key: pace(values) for key, values in walls.items()}


def _lookup(paced: dict, variant: str, pair: str) -> float | None:
    return next((paced[key] for key in _keys(variant, pair) if key in paced), None)


@dataclass(frozen=True)
class Estimate:
    """The wall time of a run not recorded yet, in seconds (the rules in the module's docstring; ``paced`` and
    ``low_paced`` from :func:`_paced`, ``part_pace`` and ``low_pace`` aggregated at one of :data:`PACES`)."""

    regime: Regime
    low: Regime
    paced: dict
    low_paced: dict
    part_pace: float | None
    low_pace: float | None
    of_ofa: bool
    """The part's variants are OFA's or cost a multiple of OFA's step (the ablation, the successors)."""

    def __call__(self, variant: str, pair: str) -> float:
        scale = image_epochs(self.regime) / image_epochs(self.low)
        if (own := _lookup(self.paced, variant, pair)) is not None:
            return own
        if (low := _lookup(self.low_paced, variant, pair)) is not None:
            return low * scale
        if self.of_ofa and (ofa := _lookup(self.low_paced, "ofa", pair)) is not None:
            return ofa * COST_FACTOR.get(variant, 1.0) * scale
        if self.part_pace is not None:
            return self.part_pace
        return self.low_pace * scale if self.low_pace is not None else 0.0
