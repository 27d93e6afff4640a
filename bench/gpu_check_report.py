"""The markdown of ``bench/gpu_check.py``'s report (``gpu_check.md``): where it ran, each check's verdict, the losses
across precisions, the equalities, the speed table."""

from __future__ import annotations


def markdown(report: dict) -> str:
    env, checks = report["environment"], report["checks"]
    lines = [f"### GPU check: {env['device_name']} ({env['mode']} mode, {env['date']})", "",
             "| | |", "|---|---|"]
    for key in ("device_name", "device", "capability", "memory_gib", "driver", "cuda_runtime", "cudnn", "torch", "timm",
                "ofakd", "git_commit", "tf32_cudnn", "tf32_matmul"):
        if key in env:
            lines.append(f"| {key} | {env[key] if env[key] is not None else 'unknown'} |")
    lines += ["", f"{report['counts']} in {report['seconds']:.0f}s.", "",
              "| check | status | seconds (budget) | what | why |", "|---|---|---:|---|---|"]
    for c in checks:
        lines.append(f"| {c['name']} | {c['status']} | {c['seconds']:.1f} ({c['budget_s']:.0f}) | {c['what']} | "
                     f"{_cell(c.get('reason'))} |")
    lines += _precision_table(checks, report["loss_rtol"]) + _equality_table(checks) + _speed_tables(checks)
    return "\n".join(lines) + "\n"


def _cell(text) -> str:
    return "" if text is None else str(text).replace("|", "/").replace("\n", " ")[:200]


def _number(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _ratio(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _precision_table(checks: list[dict], rtol: dict) -> list[str]:
    rows = [(c["name"], v) for c in checks for v in c["details"].get("variants", [])]
    if not rows:
        return []
    lines = ["", f"Each step's total loss against the fp32 eager run's (relative; tolerances {rtol}):", "",
             "| check | variant | status | max relative difference | tolerance | losses | fp16 scale at the end |",
             "|---|---|---|---:|---:|---|---:|"]
    for name, v in rows:
        losses = ", ".join(f"{x:.4f}" for x in v.get("losses", []))
        lines.append(f"| {name} | {v['variant']} | {v['status']} | {_number(v.get('max_rel_diff'))} | "
                     f"{_number(v.get('rtol'))} | {losses or _cell(v.get('reason'))} | {_number(v.get('grad_scale_end'))} |")
    return lines


def _equality_table(checks: list[dict]) -> list[str]:
    rows = [c for c in checks if "max_abs_diff" in c["details"]]
    if not rows:
        return []
    lines = ["", "Runs that must end equal (largest absolute difference of any weight or buffer):", "",
             "| check | compared | data path | max abs difference | tolerance | bit for bit | a plain repeat differs by |",
             "|---|---|---|---:|---:|---|---:|"]
    for c in rows:
        d = c["details"]
        lines.append(f"| {c['name']} | {d['compared']} | {d['data_path']} | {_number(d['max_abs_diff'])} | {_number(d['atol'])} | "
                     f"{'yes' if d['bitwise_equal'] else 'no'} | {_number(d['repeat_max_abs_diff'])} |")
    return lines


def _speed_tables(checks: list[dict]) -> list[str]:
    pairs = [c for c in checks if c["details"].get("rows") and "pair" in c["details"]]
    lines = []
    if pairs:
        d0 = pairs[0]["details"]
        lines += ["", f"The engine's training step, {d0['size']} px, batch {d0['batch']}, {d0['amp']} autocast, "
                  f"{d0['classes']} classes (median of {d0['rounds']} rounds of {d0['steps_per_round']} steps):", "",
                  "| pair | recipe | images | variant | images/s | × student only | peak allocated (MiB) "
                  "| growth in the step (MiB) | CUDA syncs / round |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|"]
        for c in pairs:
            d = c["details"]
            for r in d["rows"]:
                lines.append(f"| {d['pair']} | {d['recipe']} | {'channels-last' if r['channels_last'] else 'contiguous'} "
                             f"| {r['variant']} | {r['images_per_s']:.0f} | {_ratio(r.get('x_student_only'))} | "
                             f"{_number(r.get('peak_allocated_mib'), 5)} | {r['step_growth_mib']:.0f} | "
                             f"{_number(r.get('cuda_syncs_per_round'))} |")
        lines += ["", "| pair | teacher | cache recording images/s (steady) | end to end | loader workers "
                  "| teacher forward alone, images/s |", "|---|---|---:|---:|---:|---:|"]
        for c in pairs:
            d = c["details"]
            rec = d.get("recording") or {}
            forward = next((r["teacher_forward_images_per_s"] for r in d["rows"] if "teacher_forward_images_per_s" in r), None)
            lines.append(f"| {d['pair']} | {d['teacher']} | {_number(rec.get('steady_images_per_s'), 4)} | "
                         f"{_number(rec.get('images_per_s'), 4)} | {rec.get('workers', '—')} | {_number(forward, 4)} |")
    cifar = next((c for c in checks if c["name"] == "speed_cifar_loaders" and c["details"].get("rows")), None)
    if cifar is not None:
        d = cifar["details"]
        lines += ["", f"CIFAR-size data end to end (`fit`, {d['student']} alone, 32 px, batch {d['batch']}, "
                  f"{d['steps_per_epoch']} steps an epoch; the second epoch, loading included):", "",
                  "| data path | loader workers | images/s | peak allocated (MiB) |", "|---|---:|---:|---:|"]
        for r in d["rows"]:
            lines.append(f"| {r['data_path']} | {r['workers']} | {r['images_per_s']:.0f} | "
                         f"{_number(r.get('peak_allocated_mib'), 5)} |")
    return lines
