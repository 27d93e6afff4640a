"""``bench/accuracy.py --converged``: run the converged benchmark's job graph, then write its tables.

Resumable, on any machine: a run whose record is in the result store (``--results``; by default
``bench/results/converged/`` in the repository, for the smoke size OUT/results) is not run again, a teacher
in the store is not trained again, an interrupted teacher or student resumes from its ``last.pt``.
``--report-only`` writes the tables from the records alone. Working files in OUT (default
``bench-out/accuracy-converged``): ``teachers/``, ``caches/``, ``runs/REGIME/PAIR/VARIANT-sSEED/``, ``cka/``,
``logs/``; the tables ``converged.md``, ``converged.json`` and the heatmaps ``cka-PAIR.png``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from converged import SIZES, all_jobs, check_grid
from converged_report import write
from pool import fmt_s, register_models, run_jobs
from records import RESULTS, Store


def run(args) -> dict:
    if args.quick:
        raise SystemExit("--converged takes --smoke (its smallest size) or nothing (the full size), not --quick")
    name = "converged-smoke" if args.smoke else "converged"
    size = SIZES[name]
    out = Path(args.out or f"bench-out/accuracy-{name}")
    title = f"Accuracy benchmark, converged budget ({name})"
    if args.fresh and out.exists() and not args.report_only:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(Path(args.results) if args.results else out / "results" if args.smoke else RESULTS)
    register_models()
    failed: list[str] = []
    if not args.report_only:
        check_grid(out, size, args.ablation, args.successors)
        jobs = all_jobs(out, size, args.device, store, args.ablation, args.successors, args.successors_first)
        start = time.perf_counter()
        failed = run_jobs(jobs, args.workers, title=f"{name} -> {out}")
        print(f"== ran {len(jobs)} job(s) in {fmt_s(time.perf_counter() - start)}"
              + (f"; {len(failed)} failed or skipped" if failed else ""), flush=True)
    path, data = write(out, store, size, title, ablation=args.ablation or (out / "ablation.json").is_file(),
                       successors=args.successors or (out / "successors.json").is_file())
    from cka_figure import plot

    pngs = plot(data, size, out / "cka.png")
    print()
    print(path.read_text())
    print(f"wrote {path}, {path.with_suffix('.json')}" + "".join(f", {png}" for png in pngs))
    if failed:
        raise SystemExit(f"{len(failed)} job(s) failed or could not run: {', '.join(failed[:10])}"
                         f"{' ...' if len(failed) > 10 else ''} (logs in {out / 'logs'})")
    return data
