"""``RunRecord``: a run folder read back (config.yaml, summary.json, metrics.jsonl, best.safetensors, last.pt), with
one-line errors for what is missing or damaged."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ofakd.errors import ConfigError, OfakdError, StudentSourceError, UnfinishedRunError
from ofakd.run_folder import (
    RunRecord,
    StudentMetadata,
    checkpoint_student,
    runs_below,
    save_state,
    save_weights,
)


def test_config_reads_yaml_as_ofakd_writes_it_and_refuses_what_is_not_a_mapping(tmp_path):
    (tmp_path / "config.yaml").write_text("train:\n  lr: 1e-5\n  epochs: 3\nstudent:\n  name: resnet18\n")
    record = RunRecord.at(tmp_path)
    assert record.has_config and record.config() == {"train": {"lr": 1e-5, "epochs": 3}, "student": {"name": "resnet18"}}
    assert record.section("student") == {"name": "resnet18"} and record.section("teacher") == {}
    (tmp_path / "config.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="config.yaml must hold a mapping of sections"):
        record.config()


def test_summary_names_a_missing_or_damaged_file_and_summary_if_any_gives_none(tmp_path):
    record = RunRecord.at(tmp_path)
    with pytest.raises(OfakdError, match="has no summary.json: pass the folder of a finished run"):
        record.summary()
    (tmp_path / "summary.json").write_text('{"complete": tr')
    with pytest.raises(OfakdError, match="summary.json is not valid JSON .*interrupted while writing it"):
        record.summary()
    assert record.summary_if_any() == {} and not record.complete
    (tmp_path / "summary.json").write_text('{"complete": true, "best_top1": 91.5}')
    assert record.summary() == {"complete": True, "best_top1": 91.5} and record.complete


def test_metrics_skip_a_torn_last_line_and_what_is_not_a_record(tmp_path):
    lines = [json.dumps({"kind": "train", "step": 1}), "[1, 2]", json.dumps({"kind": "eval", "top1": 50.0}),
             '{"kind": "train", "st']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    with pytest.warns(UserWarning, match=r"1 line\(s\) are not JSON records \(line 2 first\)"):  # not the torn one
        assert RunRecord.at(tmp_path).metrics() == [{"kind": "train", "step": 1}, {"kind": "eval", "top1": 50.0}]
    assert RunRecord.at(tmp_path / "none").metrics() == []


def test_the_teacher_section_of_a_train_run_takes_its_student_and_best_weights(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "student:\n  name: resnet18\n  kwargs: {drop_rate: 0.1}\n  input_size: [3, 32, 32]\n  pretrained: true\n")
    with pytest.raises(ConfigError, match="expected config.yaml and best.safetensors there"):
        RunRecord.at(tmp_path).teacher_section()
    save_weights(tmp_path / "best.safetensors", nn.Linear(2, 3), StudentMetadata(model="resnet18", num_classes=3))
    assert RunRecord.at(tmp_path).teacher_section() == {
        "name": "resnet18", "kwargs": {"drop_rate": 0.1}, "input_size": [3, 32, 32],
        "checkpoint": str(tmp_path / "best.safetensors")}  # not the student's own pretrained weights
    assert RunRecord.at(tmp_path).student_metadata().num_classes == 3
    assert set(RunRecord.at(tmp_path).best_weights()) == {"weight", "bias"}


def test_the_student_inside_last_pt_plain_or_ema(tmp_path):
    record = RunRecord.at(tmp_path)
    with pytest.raises(UnfinishedRunError, match="no finished checkpoint \\(last.pt is missing"):
        record.checkpoint()
    w = torch.ones(2)
    save_state(tmp_path / "last.pt", {"epoch": 1, "distiller": {"student.w": w, "branches.b": w}, "ema": None})
    ckpt = record.checkpoint()
    assert list(record.student_weights(ckpt, ema=False)) == ["w"]
    with pytest.raises(StudentSourceError, match="last.pt holds no EMA weights; pass --no-ema"):
        record.student_weights(ckpt, ema=True)
    assert list(checkpoint_student({"ema": {"module.w": w}}, ema=True, where="x")) == ["w"]
    with pytest.raises(StudentSourceError, match="x: no 'student.\\*' tensors; it is not an ofakd last.pt"):
        checkpoint_student({"distiller": {"branches.b": w}}, ema=False, where="x")


def test_runs_below_a_folder_finished_and_not(tmp_path):
    for name, files in (("a", ["summary.json"]), ("b/c", ["metrics.jsonl"]), ("b/d", ["metrics.jsonl", "summary.json"])):
        (tmp_path / name).mkdir(parents=True)
        for file in files:
            (tmp_path / name / file).write_text("{}")
    assert runs_below(tmp_path) == ([tmp_path / "a", tmp_path / "b" / "d"], [tmp_path / "b" / "c"])
    assert runs_below(tmp_path / "a") == ([tmp_path / "a"], [])
