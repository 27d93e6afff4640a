"""Tables of the converged benchmark from the result store's records alone (missing cells marked).

Per regime: the pair x variant table of final top-1 on the test images (mean ± sample std over
seeds, with the seed count where some are missing), Welch's t-tests (OFA vs KD, OFA vs DIST, the
best variant vs the runner-up) with Holm's correction over every test of the regime's table, whether
scratch plateaued, and the teachers against their floors. Plus the teacher-vs-student CKA summary
when its records exist. Only records of the current grid's cells count. Writes ``converged.md`` and
``converged.json`` into OUT.
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
from pathlib import Path

from converged import (
    ABLATION,
    ABLATION_REGIME,
    PAIRS,
    SUCCESSORS,
    TEACHERS,
    VARIANT_KEYS,
    VARIANTS,
    Size,
    record_folder,
    student_cell,
    teacher_cell,
)
from grid_cost import grid_cost
from records import Store, digest
from stats import holm, welch

MISSING = "—"
PLATEAU_EPOCHS = 3
PLATEAU_POINTS = 0.3


def teacher_rows(store: Store, size: Size) -> list[dict]:
    rows = []
    for teacher in (TEACHERS[k] for k in dict.fromkeys(PAIRS[p][0] for p in size.pairs)):
        record = store.teacher(teacher.key, digest(teacher_cell(size, teacher))) or {}
        top1 = record.get("test_top1")
        rows.append({
            "teacher": teacher.key, "model": teacher.model.key, "final_top1": top1, "floor": teacher.floor,
            "meets_floor": None if top1 is None else top1 >= teacher.floor, "val_images": record.get("test_images"),
            "epochs": record.get("epochs"), "params": record.get("params"), "wall_time_s": record.get("wall_time_s"),
            "weights_sha256": record.get("weights_sha256"), "device": record.get("device"),
        })
    return rows


VARIANT_BY_KEY = {v.key: v for v in (*VARIANTS, *ABLATION, *SUCCESSORS)}
SUCCESSOR_RIVALS = ("kd", "dist", "ofa", "ofa-w1")
"""What a successor is compared with (Welch's t, Holm over the table)."""


def _records(store: Store, size: Size, regime: str, pair: str, variant: str) -> dict[int, dict]:
    """The records of one (regime, pair, variant) that match the grid, by seed."""
    regime_spec = next(r for r in size.regimes if r.key == regime)
    found = {}
    for seed in size.seeds:
        cell = student_cell(size, regime_spec, pair, VARIANT_BY_KEY[variant], seed)
        record = store.run(regime, record_folder(pair, variant), variant, seed, cell_digest=digest(cell))
        if record is not None and isinstance(record.get("test_top1"), (int, float)):
            found[seed] = record
    return found


def _cell(store: Store, size: Size, regime: str, pair: str, variant: str) -> dict:
    """Final test top-1 of every recorded seed of one (regime, pair, variant)."""
    records = _records(store, size, regime, pair, variant)
    values = [float(r["test_top1"]) for r in records.values()]
    return {
        "pair": pair, "variant": variant, "seeds": list(records), "top1": values,
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "wall_time_s": [r.get("wall_time_s") for r in records.values()],
        "params": next((r.get("params") for r in records.values()), None),
        "devices": sorted({str(r.get("device")) for r in records.values()}),
    }


def collect(store: Store, size: Size, ablation: bool = False, successors: bool = False) -> dict:
    """Everything the tables need, as plain JSON-able data."""
    regimes = {}
    for regime in size.regimes:
        cells = {f"{pair}|{v}": _cell(store, size, regime.key, pair, v) for pair in size.pairs for v in VARIANT_KEYS}
        regimes[regime.key] = {
            "label": regime.label, "epochs": regime.epochs, "train_images": regime.train_subset or 60000,
            "cells": cells, "tests": significance(cells, size), "plateau": plateau(store, size, regime.key),
        }
    data = {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seeds": list(size.seeds), "teachers": teacher_rows(store, size), "regimes": regimes,
        "cka": cka_summary(store, size),
    }
    data["cka_tests"] = cka_significance(data["cka"])
    if ablation:
        data["ablation"] = ablation_cells(store, size, regimes)
    if successors:
        data["successors"] = successor_cells(store, size, regimes)
    data["cost"] = grid_cost(store, size, ablation, successors)
    return data


def successor_cells(store: Store, size: Size, regimes: dict) -> dict:
    """The successors' cells beside KD, DIST, OFA and OFA w1 of the same regime, with Welch's t against each."""
    main = regimes[ABLATION_REGIME]["cells"]
    result = {"regime": ABLATION_REGIME, "cells": {}, "tests": {}}
    for pair in size.pairs:
        for variant in SUCCESSORS:
            cell = _cell(store, size, ABLATION_REGIME, pair, variant.key)
            result["cells"][f"{pair}|{variant.key}"] = cell
            for rival in SUCCESSOR_RIVALS:
                result["tests"][f"{pair}|{variant.key} vs {rival}"] = _test(cell, main[f"{pair}|{rival}"])
    _correct(list(result["tests"].values()))
    return result


def ablation_cells(store: Store, size: Size, regimes: dict) -> dict:
    """The ablation variants' cells beside KD, OFA and OFA w1 of the same regime, with Welch's t against KD."""
    main = regimes[ABLATION_REGIME]["cells"]
    result = {"regime": ABLATION_REGIME, "cells": {}, "vs_kd": {}}
    for pair in size.pairs:
        for key in ("kd", "ofa", "ofa-w1", *(v.key for v in ABLATION)):
            cell = main[f"{pair}|{key}"] if key in VARIANT_KEYS else _cell(store, size, ABLATION_REGIME, pair, key)
            result["cells"][f"{pair}|{key}"] = cell
            if key != "kd":
                result["vs_kd"][f"{pair}|{key}"] = _test(cell, main[f"{pair}|kd"])
    _correct(list(result["vs_kd"].values()))
    return result


def _ranked(cells: dict, pair: str) -> list[dict]:
    present = [cells[f"{pair}|{v}"] for v in VARIANT_KEYS if cells[f"{pair}|{v}"]["mean"] is not None]
    return sorted(present, key=lambda c: -c["mean"])


def significance(cells: dict, size: Size) -> dict:
    """Per pair: Welch's t of OFA vs KD, OFA vs DIST, the recommended candidates, and best vs runner-up."""
    tests = {}
    for pair in size.pairs:
        entry = {}
        for a, b in (("ofa", "kd"), ("ofa", "dist"), ("ofa-w1", "kd"), ("ofa+dist", "kd"), ("ofa+dist", "dist")):
            entry[f"{a} vs {b}"] = _test(cells[f"{pair}|{a}"], cells[f"{pair}|{b}"])
        ranked = _ranked(cells, pair)
        if len(ranked) >= 2:
            entry["best vs runner-up"] = {**(_test(ranked[0], ranked[1]) or {}),
                                          "best": ranked[0]["variant"], "runner_up": ranked[1]["variant"]}
        tests[pair] = entry
    _correct([t for entry in tests.values() for name, t in entry.items() if name != "best vs runner-up"])
    return tests


def _correct(tests: list[dict | None]) -> None:
    """Holm's step-down adjustment over a table's tests (family-wise error 5 %): each test gains ``p_holm``."""
    present = [t for t in tests if t and "p" in t]
    for test, adjusted in zip(present, holm([t["p"] for t in present])):
        test["p_holm"] = round(adjusted, 4)


def _test(a: dict, b: dict, field: str = "top1") -> dict | None:
    """Welch's t of ``a[field]`` against ``b[field]`` (per-seed values), rounded for the report."""
    result = welch(a[field], b[field])
    return None if result is None else {k: round(v, 4) for k, v in result.items()}


def plateau(store: Store, size: Size, regime: str) -> dict:
    """Scratch runs: did the last 3 epochs' top-1 (on the test images) lie within 0.3 points?"""
    result = {}
    for pair in size.pairs:
        per_seed = {}
        for seed, record in _records(store, size, regime, pair, "scratch").items():
            curve = record.get("curve") or []
            if len(curve) >= PLATEAU_EPOCHS:
                last = curve[-PLATEAU_EPOCHS:]
                per_seed[seed] = {"last": last, "spread": round(max(last) - min(last), 2),
                                  "held": max(last) - min(last) <= PLATEAU_POINTS + 1e-9}
        result[pair] = per_seed
    return result


def cka_summary(store: Store, size: Size) -> dict:
    """Mean teacher-vs-student CKA matrices per (pair, regime, variant) over the seeds recorded."""
    summary = {}
    for pair in size.cka_pairs:
        for regime in size.regimes:
            if regime.key not in size.cka_regimes:
                continue
            for variant in size.cka_variants:
                mats, names = [], None
                for seed in size.seeds:
                    data = store.cka(regime.key, record_folder(pair, variant), variant, seed)
                    if data:
                        mats.append(data["matrix"])
                        names = (data["names_teacher"], data["names_student"])
                if mats:
                    diagonals = [[m[i][i] for i in range(min(len(m), len(m[0])))] for m in mats]
                    mean = [[statistics.fmean(m[i][j] for m in mats) for j in range(len(mats[0][0]))]
                            for i in range(len(mats[0]))]
                    summary[f"{pair}|{regime.key}|{variant}"] = {
                        "pair": pair, "regime": regime.key, "variant": variant, "seeds": len(mats), "matrix": mean,
                        "names_teacher": names[0], "names_student": names[1],
                        "diagonal": [statistics.fmean(column) for column in zip(*diagonals)],
                        "seed_means": [statistics.fmean(d) for d in diagonals]}
    return summary


CKA_COMPARISONS = (("kd", "scratch"), ("ofa", "kd"), ("ofa-w1", "kd"), ("ofa", "scratch"), ("ofa-w1", "scratch"))
"""The paper's Figure 1 question: are OFA's students closer to their teacher than KD's (and than no teacher)?"""


def cka_significance(summary: dict) -> dict:
    """Per (pair, regime): Welch's t on the per-seed mean diagonal CKA (teacher stage i vs student stage i, averaged
    over the stages) for each of :data:`CKA_COMPARISONS`, Holm-adjusted over all of them."""
    tests = {}
    for key in dict.fromkeys(f"{entry['pair']}|{entry['regime']}" for entry in summary.values()):
        cells = {variant: summary.get(f"{key}|{variant}") for comparison in CKA_COMPARISONS for variant in comparison}
        tests[key] = {f"{a} vs {b}": _test(cells[a], cells[b], "seed_means") if cells[a] and cells[b] else None
                      for a, b in CKA_COMPARISONS}
    _correct([t for entry in tests.values() for t in entry.values()])
    return tests


# ---- markdown ----

def _fmt_cell(cell: dict, n_seeds: int) -> str:
    if cell["mean"] is None:
        return MISSING
    text = f"{cell['mean']:.2f}" + (f" ± {cell['std']:.2f}" if cell["std"] is not None else "")
    return text + (f" (n={len(cell['top1'])})" if len(cell["top1"]) < n_seeds else "")


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _fmt_test(test: dict | None, digits: int = 2) -> str:
    if not test or "p" not in test:
        return MISSING
    mark = " *" if test["p"] < 0.05 else ""
    diff = f"{test['diff']:+.{digits}f}"
    holm_p = test.get("p_holm")
    if holm_p is not None:
        mark += " †" if holm_p < 0.05 else ""
        return f"{diff} (p {_fmt_p(test['p'])}, Holm {_fmt_p(holm_p)}){mark}"
    return f"{diff} (p {_fmt_p(test['p'])}){mark}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render(data: dict, size: Size, title: str) -> str:
    n = len(size.seeds)
    teachers = {t["teacher"]: t for t in data["teachers"]}
    lines = [f"# {title}", "", f"Generated {data['generated']} from the runs finished so far "
             f"(init seeds {', '.join(map(str, size.seeds))}; `{MISSING}`: not run yet).", ""]
    lines.append("## Teachers (all 60,000 training images; top-1 on the 10,000 test images)\n")
    lines.append(markdown_table(
        ["teacher", "model", "params", "epochs", "top-1", "floor", "meets floor"],
        [[k, t["model"], MISSING if t["params"] is None else f"{t['params'] / 1e3:.0f}k",
          MISSING if t["epochs"] is None else str(t["epochs"]),
          MISSING if t["final_top1"] is None else f"{t['final_top1']:.2f}", f"{t['floor']:.0f}",
          MISSING if t["meets_floor"] is None else ("yes" if t["meets_floor"] else "**no**")]
         for k, t in teachers.items()]))
    notes = " · ".join(f"{v.key}: {v.note}" for v in VARIANTS if v.note)
    for key, reg in data["regimes"].items():
        lines.append(f"## Regime `{key}`: {reg['label']}, {reg['epochs']} epochs\n")
        lines.append("Final top-1 (%) of the last epoch's weights on the test images, mean ± sample std over "
                     "seeds (bold: best per pair; `(n=k)`: only k seeds finished).\n")
        rows = []
        for pair in size.pairs:
            teacher_key, student = PAIRS[pair]
            cells = {v: reg["cells"][f"{pair}|{v}"] for v in VARIANT_KEYS}
            ranked = _ranked(reg["cells"], pair)
            texts = {v: _fmt_cell(c, n) for v, c in cells.items()}
            if ranked:
                texts[ranked[0]["variant"]] = f"**{texts[ranked[0]['variant']]}**"
            t1 = teachers[teacher_key]["final_top1"]
            rows.append([pair, student.key, MISSING if t1 is None else f"{t1:.2f}", *(texts[v] for v in VARIANT_KEYS)])
        lines.append(markdown_table(["pair", "student", "teacher", *VARIANT_KEYS], rows))
        lines.append("Welch's t-test (two-sided, unequal variances) on the per-seed top-1: difference of means in "
                     "points (p-value, and Holm's adjusted p over the table's tests but best vs runner-up); `*`: "
                     "p < 0.05; `†`: still below 0.05 after Holm's correction.\n")
        test_cols = ["ofa vs kd", "ofa vs dist", "ofa-w1 vs kd", "ofa+dist vs kd", "ofa+dist vs dist"]
        rows = []
        for pair in size.pairs:
            tests = reg["tests"][pair]
            best = tests.get("best vs runner-up")
            best_text = MISSING if not best else f"{best['best']} vs {best['runner_up']}: {_fmt_test(best)}"
            rows.append([pair, *(_fmt_test(tests.get(c)) for c in test_cols), best_text])
        lines.append(markdown_table(["pair", *test_cols, "best vs runner-up"], rows))
        lines.append(f"Scratch plateau (last {PLATEAU_EPOCHS} epochs within {PLATEAU_POINTS} points on the test "
                     "images), per seed: spread in points.\n")
        rows = []
        for pair in size.pairs:
            seeds = reg["plateau"][pair]
            held = sum(s["held"] for s in seeds.values())
            spreads = ", ".join(f"s{seed} {s['spread']:.2f}" for seed, s in seeds.items()) or MISSING
            rows.append([pair, f"{held}/{len(seeds)}" if seeds else MISSING, spreads])
        lines.append(markdown_table(["pair", "criterion held", "spread"], rows))
    lines += render_cka(data)
    if "ablation" in data:
        lines += render_ablation(data["ablation"], size)
    if "successors" in data:
        lines += render_successors(data["successors"], data["regimes"][ABLATION_REGIME]["cells"], size)
    lines += render_cost(data["cost"])
    lines.append("Variants: " + notes + ".\n")
    return "\n".join(lines)


def render_cka(data: dict) -> list[str]:
    """The teacher-vs-student CKA table (mean diagonal per student variant) and its Welch/Holm comparisons."""
    if not data["cka"]:
        return []
    lines = ["## Teacher-vs-student CKA\n"]
    lines.append("Linear CKA (unbiased HSIC, `ofakd cka`) between teacher stage i and student stage i, mean over "
                 "seeds; stage 4 is the one next to the logits.\n")
    rows = []
    for entry in data["cka"].values():
        diag, per_seed = entry["diagonal"], entry["seed_means"]
        spread = f" ± {statistics.stdev(per_seed):.3f}" if len(per_seed) > 1 else ""
        rows.append([entry["pair"], entry["regime"], entry["variant"], str(entry["seeds"]),
                     *(f"{d:.3f}" for d in diag), f"{statistics.fmean(diag):.3f}{spread}"])
    lines.append(markdown_table(["pair", "regime", "student", "seeds", "stage 1", "stage 2", "stage 3", "stage 4",
                                 "mean ± std over seeds"], rows))
    lines.append("Welch's t on the per-seed mean CKA (difference in CKA, p, Holm over this table's tests; `*` p < "
                 "0.05, `†` after Holm):\n")
    names = [f"{a} vs {b}" for a, b in CKA_COMPARISONS]
    rows = [[*key.split("|"), *(_fmt_test(tests.get(name), digits=3) for name in names)]
            for key, tests in data["cka_tests"].items()]
    lines.append(markdown_table(["pair", "regime", *names], rows))
    return lines


def render_cost(cost: dict) -> list[str]:
    lines = ["## What the grid costs, from its records\n",
             "Core-hours (one worker process, one thread, is one core) of the recorded runs' wall times, and an "
             "estimate of the runs still to do from them (`bench/grid_cost.py`): at the median recorded run of each kind, "
             "and at the fastest (the closest the records come to an idle core). Wall times are those of the machine "
             "that made each record, under whatever load it had.\n"]
    keys = ("measured_h", "left_h", "left_fastest_h")
    rows = [[p["part"], f"{p['recorded']}/{p['runs']}", *(f"{p[k]:.1f}" for k in keys)] for p in cost["parts"]]
    rows.append(["all students", f"{sum(p['recorded'] for p in cost['parts'])}/{sum(p['runs'] for p in cost['parts'])}",
                 *(f"{sum(p[k] for p in cost['parts']):.1f}" for k in keys)])
    lines.append(markdown_table(["part", "runs recorded", "core-h measured", "core-h left (median run)",
                                 "core-h left (fastest run)"], rows))
    teachers = ", ".join(f"{t['teacher']} {t['measured_h']:.1f}" for t in cost["teachers"] if t["measured_h"] is not None)
    lines.append(f"Teachers, core-h measured: {teachers or MISSING}.\n")
    return lines


def render_ablation(ablation: dict, size: Size) -> list[str]:
    n = len(size.seeds)
    keys = ["kd", "ofa", "ofa-w1", *(v.key for v in ABLATION)]
    lines = [f"## OFA ablation (regime `{ablation['regime']}`)\n",
             "One factor changed from OFA's authors' settings (eps 1, T 1, stages 1-4, w_ofa 0.1). Final top-1 on "
             "the test images, mean ± std over seeds; below each, the difference to KD in points with Welch's p.\n"]
    rows = []
    for pair in size.pairs:
        rows.append([pair, *(_fmt_cell(ablation["cells"][f"{pair}|{k}"], n) for k in keys)])
        rows.append(["  vs kd", MISSING, *(_fmt_test(ablation["vs_kd"].get(f"{pair}|{k}")) for k in keys[1:])])
    lines.append(markdown_table(["pair", *keys], rows))
    lines.append("Ablation variants: " + " · ".join(f"{v.key}: {v.note}" for v in ABLATION) + ".\n")
    return lines


def render_successors(successors: dict, main: dict, size: Size) -> list[str]:
    n = len(size.seeds)
    lines = [f"## After OFA-KD (regime `{successors['regime']}`)\n",
             "Methods published after OFA-KD, with their authors' defaults, beside KD, DIST and OFA of the same regime: "
             "final top-1 on the test images, mean ± std over seeds, and the difference to each (Welch's p, Holm over "
             "this table).\n"]
    rows = []
    for pair in size.pairs:
        for variant in SUCCESSORS:
            cell = successors["cells"][f"{pair}|{variant.key}"]
            rows.append([pair, variant.key, _fmt_cell(cell, n), *(_fmt_cell(main[f"{pair}|{r}"], n) for r in SUCCESSOR_RIVALS),
                         *(_fmt_test(successors["tests"].get(f"{pair}|{variant.key} vs {r}")) for r in SUCCESSOR_RIVALS)])
    lines.append(markdown_table(["pair", "method", "top-1", *SUCCESSOR_RIVALS, *(f"vs {r}" for r in SUCCESSOR_RIVALS)],
                                rows))
    lines.append("Methods: " + " · ".join(f"{v.key}: {v.note}" for v in SUCCESSORS) + ".\n")
    return lines


def write(out: Path, store: Store, size: Size, title: str, ablation: bool = False,
          successors: bool = False) -> tuple[Path, dict]:
    data = collect(store, size, ablation, successors)
    text = render(data, size, title)
    (out / "converged.md").write_text(text)
    (out / "converged.json").write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return out / "converged.md", data


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value))
