"""``ofakd report``: finished runs → markdown table (seeds grouped as mean ± std) and curves PNG."""

from __future__ import annotations

import json
import statistics
import struct

import pytest

from ofakd.analysis.report_table import fmt_duration, fmt_mean_std, summary_table
from ofakd.analysis.report_writer import write_report
from ofakd.analysis.runs import find_runs, group_runs
from ofakd.errors import OfakdError


def make_run(
    root,
    name,
    *,
    method="ofa",
    teacher="deit_tiny_patch16_224",
    student="resnet18",
    seed=0,
    best_top1=80.0,
    final_top1=79.0,
    epochs=3,
    wall_time_s=125.0,
    images_per_s=900.0,
    branch_params=350_000,
):
    """Write a finished run folder the way the engine does (summary.json + metrics.jsonl)."""
    folder = root / name
    folder.mkdir(parents=True)
    summary = {
        "name": name,
        "method": method,
        "teacher": teacher,
        "student": student,
        "dataset": "digits",
        "seed": seed,
        "epochs": epochs,
        "best_top1": best_top1,
        "best_top5": 99.5,
        "final_top1": final_top1,
        "final_top5": 99.0,
        "student_params": 11_181_642,
        "branch_params": branch_params,
        "wall_time_s": wall_time_s,
        "images_per_s": images_per_s,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    lines, step = [], 0
    for epoch in range(epochs):
        for _ in range(3):
            lines.append(
                {
                    "kind": "train",
                    "epoch": epoch,
                    "step": step,
                    "lr": 0.1,
                    "loss": 2.0 / (epoch + 1),
                    "images_per_s": images_per_s,
                    "losses": {"gt": 1.0, "ofa": 1.0 / (epoch + 1)},
                }
            )
            step += 1
        top1 = best_top1 * (epoch + 1) / epochs
        lines.append({"kind": "eval", "epoch": epoch, "top1": top1, "top5": 99.0, "loss": 1.0 / (epoch + 1)})
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    (folder / "metrics.jsonl").write_text(text + '{"kind": "train", "epo')  # a truncated last line is skipped
    return folder


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _table(text: str) -> list[dict[str, str]]:
    """Parse the first markdown table of ``text`` into dicts."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(headers) or cells[0] == "run":
            break
        rows.append(dict(zip(headers, cells)))
    return rows


def test_two_seeds_are_grouped_as_mean_and_std(tmp_path):
    a = make_run(
        tmp_path, "ofa-s0", seed=0, best_top1=80.0, final_top1=79.0, wall_time_s=120.0, images_per_s=900.0
    )
    b = make_run(
        tmp_path, "ofa-s1", seed=1, best_top1=81.0, final_top1=79.5, wall_time_s=130.0, images_per_s=1000.0
    )
    report = write_report([a, b], tmp_path / "out")
    rows = _table(report.text)
    assert len(rows) == 1
    row = rows[0]
    assert (row["method"], row["teacher"], row["student"], row["dataset"]) == (
        "ofa",
        "deit_tiny_patch16_224",
        "resnet18",
        "digits",
    )
    assert row["seeds"] == "0, 1"
    assert row["best top-1"] == f"80.50 ± {statistics.stdev([80.0, 81.0]):.2f}"
    assert row["final top-1"] == f"79.25 ± {statistics.stdev([79.0, 79.5]):.2f}"
    assert row["best top-5"] == "99.50 ± 0.00"
    assert row["student params"] == "11.18M"
    assert row["branch params"] == "350.0k"
    assert row["epochs"] == "3"
    assert row["wall time"] == "2m 05s ± 7.1s"
    assert row["images/s"] == "950 ± 71"
    assert (tmp_path / "out" / "report.md").read_text() == report.text


def test_different_configurations_get_their_own_rows(tmp_path):
    make_run(tmp_path / "runs", "ofa-s0", seed=0, best_top1=80.0)
    make_run(tmp_path / "runs", "ofa-s1", seed=1, best_top1=82.0)
    make_run(tmp_path / "runs", "kd-s0", method="kd", seed=0, best_top1=77.0, branch_params=0)
    make_run(
        tmp_path / "runs",
        "scratch",
        method="vanilla",
        teacher=None,
        seed=0,
        best_top1=74.0,
        branch_params=None,
    )
    groups = group_runs(find_runs([tmp_path / "runs"]))  # a folder of runs is expanded
    assert sorted((g.config["method"], len(g.runs)) for g in groups) == [
        ("kd", 1),
        ("ofa", 2),
        ("vanilla", 1),
    ]
    rows = {row["method"]: row for row in _table(summary_table(groups))}
    assert rows["ofa"]["best top-1"].startswith("81.00 ± 1.41")
    assert rows["kd"]["best top-1"] == "77.00"  # one seed: no ±
    assert rows["kd"]["branch params"] == "0"
    assert rows["vanilla"]["teacher"] == "—"
    assert rows["vanilla"]["branch params"] == "—"


def test_curves_png_and_cli(tmp_path, capsys):
    from ofakd.cli import main

    runs = [make_run(tmp_path, f"ofa-s{s}", seed=s, best_top1=80.0 + s) for s in range(2)]
    runs.append(make_run(tmp_path, "kd-s0", method="kd"))
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| ofa |" in printed and "| kd |" in printed
    width, height = _png_size(out / "curves.png")
    assert width == 1500 and height > 400
    text = (out / "report.md").read_text()
    assert "![accuracy and loss curves](curves.png)" in text
    assert len(_table(text)) == 2


def test_run_curves_are_read_from_metrics(tmp_path):
    (run,) = find_runs([make_run(tmp_path, "r", epochs=3, best_top1=90.0)])
    assert run.eval_curve("top1") == ([0, 1, 2], [30.0, 60.0, 90.0])
    epochs, losses = run.epoch_train_loss()
    assert epochs == [0, 1, 2] and losses == pytest.approx([2.0, 1.0, 2 / 3])


def test_missing_summary_is_a_clear_error(tmp_path, capsys):
    from ofakd.cli import main

    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "metrics.jsonl").write_text("")
    with pytest.raises(OfakdError, match="summary.json"):
        find_runs([tmp_path / "unfinished"])
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_formatting_helpers():
    assert fmt_mean_std([]) == "—"
    assert fmt_mean_std([1.0]) == "1.00"
    assert fmt_mean_std([1.0, 3.0]) == "2.00 ± 1.41"
    assert fmt_duration(42) == "42.0s"
    assert fmt_duration(185) == "3m 05s"
    assert fmt_duration(2 * 3600 + 7 * 60) == "2h 07m"


def test_find_runs_skips_unfinished_runs_inside_a_parent(tmp_path):
    import json as _json

    import pytest as _pytest

    from ofakd.analysis.runs import find_runs

    for name, complete in (("done", True), ("training", False)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "summary.json").write_text(_json.dumps({"method": "kd", "complete": complete, "seed": 0}))
        (folder / "metrics.jsonl").write_text("")
    with _pytest.warns(UserWarning, match="has not finished"):
        runs = find_runs([tmp_path])
    assert [r.path.name for r in runs] == ["done"]


def _with_config(folder, overrides):
    """Give a run folder the config.yaml a run of ``demo`` + ``overrides`` writes (options resolved)."""
    from ofakd.config import dump_config, load_config

    (folder / "config.yaml").write_text(dump_config(load_config("demo", overrides)))
    return folder


def test_a_sweep_is_rows_of_configurations_named_by_the_settings_that_differ(tmp_path):
    """Two OFA runs with other eps and ofa_weight are two configurations, not two seeds of one; the table names
    the settings that differ; runs alike in everything but the seed (and their folder names) are seeds."""
    runs = tmp_path / "runs"
    base = [("train.seed", 42), ("data.root", "/data/a")]
    _with_config(make_run(runs, "ofa-a-s42", seed=42, best_top1=10.0), [*base, ("run.name", "ofa-a-s42")])
    _with_config(make_run(runs, "ofa-a-s43", seed=43, best_top1=12.0),
                 [("train.seed", 43), ("data.root", "/data/b"), ("data.workers", 4), ("run.name", "ofa-a-s43")])
    _with_config(make_run(runs, "ofa-b-s42", seed=42, best_top1=20.0),
                 [*base, ("method.eps", [1.5]), ("method.ofa_weight", 0.1), ("run.name", "ofa-b-s42")])
    report = write_report([runs], tmp_path / "out")
    rows = _table(report.text)
    assert [(r["seeds"], r["method.eps"], r["method.ofa_weight"]) for r in rows] == [
        ("42, 43", "[1]", "1"), ("42", "[1.5]", "0.1")]
    assert rows[0]["best top-1"].startswith("11.00 ±") and rows[1]["best top-1"] == "20.00"
    assert "differ in `method.eps`, `method.ofa_weight`" in report.text
    assert "data.root" not in report.text and "train.seed" not in report.text  # neither makes a configuration


def test_an_option_of_another_method_is_not_a_difference(tmp_path):
    runs = tmp_path / "runs"
    _with_config(make_run(runs, "ofa", best_top1=10.0), [])
    _with_config(make_run(runs, "kd", method="kd", best_top1=12.0), [("method", {"name": "kd", "temperature": 4})])
    rows = {r["method"]: r for r in _table(write_report([runs], tmp_path / "out").text)}
    assert rows["kd"]["method.temperature"] == "4" and rows["ofa"]["method.temperature"] == "1"
    assert "method.eps" not in rows["ofa"]  # only OFA has eps: one value, no column
