"""The report of a tune folder (``ofakd report TUNE``): what was searched and how honestly, the trials, the best per
method, the cost, the final runs; ``history.png`` and ``importance.png`` beside it. Read from the study alone
(``tune.json`` says where it lives), so a worker on any machine sharing the storage can write it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..run_folder.atomic import write_text, writing
from . import folder as names
from .plots import importances, plot_history, plot_importances
from .study import ERROR_ATTR, SETTINGS_KEY, SURPLUS_ATTR, open_storage


@dataclass
class TuneReport:
    markdown: Path
    history: Path
    importance: Path
    text: str


def write_tune_report(tune_dir: str | Path, out: str | Path) -> TuneReport:
    """Write ``out/report.md``, ``out/history.png`` and ``out/importance.png`` for the tuning in ``tune_dir``."""
    where = names.read_tune_json(tune_dir)
    study = optuna.load_study(study_name=where["study"], storage=open_storage(where["storage"], heartbeat_s=60))
    trials = [t for t in study.get_trials(deepcopy=False) if SURPLUS_ATTR not in t.user_attrs]
    out = Path(out)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    history = plot_history(trials, out / names.HISTORY)
    panels = {"all trials": importances(trials) or {}}
    for method in dict.fromkeys(t.user_attrs.get("method") for t in trials):
        panels[str(method)] = importances([t for t in trials if t.user_attrs.get("method") == method],
                                          skip=("method",)) or {}
    importance = plot_importances(panels, out / names.IMPORTANCE)
    text = render(study, trials, Path(tune_dir), panels)
    write_text(out / names.REPORT, text)
    return TuneReport(out / names.REPORT, history, importance, text)


def render(study: optuna.Study, trials: Sequence[FrozenTrial], tune_dir: Path, panels: dict) -> str:
    settings = study.user_attrs.get(SETTINGS_KEY, {})
    recipe = settings.get("recipe", {})
    by_state = {s: sum(1 for t in trials if t.state == s) for s in TrialState}
    lines = [
        f"# ofakd tune: {study.study_name}",
        "",
        f"{recipe.get('teacher.name') or '-'} -> {recipe.get('student.name')} on {recipe.get('data.name')}; "
        f"budget {study.user_attrs.get('budget')} trials: {by_state[TrialState.COMPLETE]} complete, "
        f"{by_state[TrialState.PRUNED]} pruned, {by_state[TrialState.FAIL]} failed"
        + (f", {by_state[TrialState.RUNNING]} running" if by_state[TrialState.RUNNING] else "")
        + f". Sampler {settings.get('sampler')}, pruner {settings.get('pruner')} (on the per-epoch holdout top-1), "
        f"{settings.get('epochs')} epochs per trial.",
        "",
        "## Protocol",
        "",
        *_protocol(study, trials, settings),
        "",
        "## Search space",
        "",
        *_space(settings.get("space", {})),
        "",
        "## Best configuration",
        "",
        *_best(study, trials, tune_dir),
        "",
        "## Best per method",
        "",
        *_per_method(trials),
        "",
        "## Cost",
        "",
        *_cost(study, trials, settings),
        "",
        "## Trials",
        "",
        *_trials_table(trials),
        "",
        "## Figures",
        "",
        f"![optimisation history]({names.HISTORY})",
        "",
        f"![parameter importances]({names.IMPORTANCE})",
        "",
        *_importance_lines(panels),
    ]
    return "\n".join(lines) + "\n"


def _protocol(study: optuna.Study, trials: Sequence[FrozenTrial], settings: dict) -> list[str]:
    sizes = next((t.user_attrs["images"] for t in trials if "images" in t.user_attrs), None)
    counts = f": {sizes['train']} training images, {sizes['holdout']} held out" if sizes else ""
    finals = study.user_attrs.get("final")
    test = (f"It was read only by the {len(finals)} final run(s) of the best configuration, each scored by its "
            "last epoch (no epoch and no configuration was chosen on it)." if finals else
            "No final run has read it yet.")
    return [
        f"Trials trained on the training images less a holdout (`data.holdout` {settings.get('holdout')}, drawn "
        f"with `data.holdout_seed` {settings.get('holdout_seed')}{counts}) and were scored on "
        "that holdout: the holdout top-1 of a trial's last epoch. The test split (the recipe's validation split) was "
        f"never read by a trial. {test}",
    ]


def _space(space: dict) -> list[str]:
    rows = ["| parameter | searched over |", "|---|---|", f"| method | {', '.join(space.get('methods', []))} |",
            f"| lr | {space.get('lr')} |"]
    for method, options in space.get("options", {}).items():
        rows += [f"| {method}.{option} | {spec} |" for option, spec in options.items()]
    return rows


def _best(study: optuna.Study, trials: Sequence[FrozenTrial], tune_dir: Path) -> list[str]:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return ["No trial has completed yet."]
    best = max(complete, key=lambda t: (t.value, -t.number))
    lines = [f"Trial {best.number}: **{best.user_attrs.get('method')}**, lr {best.user_attrs.get('lr'):.3g}, "
             f"{_options(best.user_attrs.get('options', {})) or 'the method defaults'}; holdout top-1 "
             f"{best.value:.2f}. As a recipe: `{tune_dir / names.BEST_YAML}` "
             f"(`ofakd distill --config {tune_dir / names.BEST_YAML}`)."]
    finals = study.user_attrs.get("final") or []
    tops = [f["final_top1"] for f in finals if isinstance(f.get("final_top1"), (int, float))]
    if tops:
        spread = f" ± {_std(tops):.2f}" if len(tops) > 1 else ""
        seeds = ", ".join(str(f.get("seed")) for f in finals)
        counts = sorted({f["val_images"] for f in finals if isinstance(f.get("val_images"), int)})
        on = f" on {'/'.join(f'{n:,}' for n in counts)} test images" if counts else ""
        lines += ["", f"Final run(s), seeds {seeds}: test top-1 **{sum(tops) / len(tops):.2f}{spread}** "
                  f"({', '.join(f'{v:.2f}' for v in tops)}; last epoch{on}, `{tune_dir / names.FINAL}`)."]
    return lines


def _per_method(trials: Sequence[FrozenTrial]) -> list[str]:
    rows = ["| method | complete | pruned | failed | best holdout top-1 | its lr | its options | s per epoch |",
            "|---|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(t.user_attrs.get("method") for t in trials if t.user_attrs.get("method")):
        mine = [t for t in trials if t.user_attrs.get("method") == method]
        done = [t for t in mine if t.state == TrialState.COMPLETE]
        best = max(done, key=lambda t: (t.value, -t.number)) if done else None
        per_epoch = [t.user_attrs["seconds"] / t.user_attrs["epochs"] for t in mine if t.user_attrs.get("epochs")]
        value, lr, options = (f"{best.value:.2f}", f"{best.user_attrs['lr']:.3g}",
                              _options(best.user_attrs.get("options", {})) or "-") if best else ("-", "-", "-")
        rows.append(
            f"| {method} | {len(done)} | {sum(t.state == TrialState.PRUNED for t in mine)} | "
            f"{sum(t.state == TrialState.FAIL for t in mine)} | {value} | {lr} | {options} | "
            f"{f'{sum(per_epoch) / len(per_epoch):.1f}' if per_epoch else '-'} |")
    return rows


def _cost(study: optuna.Study, trials: Sequence[FrozenTrial], settings: dict) -> list[str]:
    epochs = sum(int(t.user_attrs.get("epochs", 0)) for t in trials)
    seconds = sum(float(t.user_attrs.get("seconds", 0.0)) for t in trials)
    full = int(settings.get("epochs") or 1)
    lines = [f"Trials: {epochs} student-epochs ({epochs / full:.1f} full runs of {full} epochs), {seconds:.0f} s."]
    cache = study.user_attrs.get("teacher_cache")
    if cache:
        lines.append(f"Teacher cache, recorded once: {cache['epochs']} teacher-epochs forward ({cache['views']} views), "
                     f"{cache['seconds']:.0f} s; logit-only trials replay it (teacher: cache), feature methods run the "
                     "teacher live in each trial (teacher: live, its cost is in their seconds).")
    finals = study.user_attrs.get("final") or []
    if finals:
        lines.append(f"Final runs: {sum(int(f.get('epochs_done') or 0) for f in finals)} student-epochs with the "
                     f"live teacher, {sum(float(f.get('wall_time_s') or 0) for f in finals):.0f} s.")
    return lines


def _trials_table(trials: Sequence[FrozenTrial]) -> list[str]:
    rows = ["| trial | state | method | lr | options | holdout top-1 | epochs | seconds | s per epoch | teacher |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for t in sorted(trials, key=lambda t: t.number):
        a = t.user_attrs
        state = t.state.name.lower() + (f" ({a[ERROR_ATTR]})" if ERROR_ATTR in a else "")
        value = f"{t.value:.2f}" if t.value is not None else "-"
        lr = f"{a['lr']:.3g}" if "lr" in a else "-"
        epochs = int(a.get("epochs", 0))
        per_epoch = f"{a['seconds'] / epochs:.1f}" if epochs and "seconds" in a else "-"
        rows.append(f"| {t.number} | {state.replace('|', '/')} | {a.get('method', '-')} | {lr} | "
                    f"{_options(a.get('options', {})) or '-'} | {value} | {epochs} | {a.get('seconds', 0):.0f} | "
                    f"{per_epoch} | {a.get('teacher', '-')} |")
    return rows


def _importance_lines(panels: dict) -> list[str]:
    lines = []
    for title, values in panels.items():
        if values:
            ranked = ", ".join(f"{k} {v:.2f}" for k, v in sorted(values.items(), key=lambda kv: -kv[1]))
            lines.append(f"- importance, {title}: {ranked}")
    return lines or ["- importances need at least 3 complete trials per panel"]


def _options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k} {_short(v)}" for k, v in options.items())


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _std(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
