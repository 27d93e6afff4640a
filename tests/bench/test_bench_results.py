"""The converged benchmark's result store as committed: whole teachers that give the recorded cache on this machine,
and student records that belong to the grid as it is defined now."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from tests import REPO

BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
from converged import PAIRS, SIZES, SUCCESSORS, VARIANTS, ABLATION, record_folder, student_cell, teacher_cell  # noqa: E402,I001
from records import RESULTS, digest, teacher_probe  # noqa: E402

sys.path.remove(str(BENCH))

TEACHERS = sorted(p.name for p in (RESULTS / "teachers").iterdir()) if (RESULTS / "teachers").is_dir() else []
DATA = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
SIZE = SIZES["converged"]


@pytest.mark.skipif(not TEACHERS, reason="no teacher is in bench/results/converged yet")
@pytest.mark.skipif(not DATA.is_file(), reason="needs Fashion-MNIST: apt-get install dataset-fashion-mnist")
@pytest.mark.parametrize("key", TEACHERS)
def test_a_stored_teacher_gives_the_cache_it_was_recorded_with(key):
    """The committed weights are whole, belong to the grid's teacher, and a cache recorded from them here holds the
    teacher and the first logits the record holds: a fresh clone distils from the same teacher."""
    folder = RESULTS / "teachers" / key
    record = json.loads((folder / "record.json").read_text())
    from converged import TEACHERS as SPECS

    assert record["cell_digest"] == digest(teacher_cell(SIZE, SPECS[key]))
    assert hashlib.sha256((folder / "best.safetensors").read_bytes()).hexdigest() == record["weights_sha256"]
    probe = teacher_probe(folder)
    assert probe["weights_sha256"] == record["probe"]["weights_sha256"]
    assert probe["fingerprint"] == record["probe"]["fingerprint"]
    got, expected = torch.tensor(probe["first_batch_logits"]), torch.tensor(record["probe"]["first_batch_logits"])
    assert got.shape == expected.shape == (128, 10)
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-3)  # float16 storage, another CPU's arithmetic


def student_records() -> list[Path]:
    return sorted((RESULTS / "runs").rglob("*.json")) if (RESULTS / "runs").is_dir() else []


def test_every_student_record_belongs_to_a_cell_of_the_grid():
    """A committed record carries the digest of its grid cell as the grid is defined now (a changed grid would make it
    stale without a word), its test top-1 on all 10,000 test images, one validation top-1 per epoch and the data path."""
    regimes = {r.key: r for r in SIZE.regimes}
    variants = {v.key: v for v in (*VARIANTS, *ABLATION, *SUCCESSORS)}
    cells = {}
    for regime in SIZE.regimes:
        for pair in PAIRS:
            for variant in variants.values():
                for seed in SIZE.seeds:
                    where = (regime.key, record_folder(pair, variant.key), variant.key, seed)
                    cells[where] = digest(student_cell(SIZE, regime, pair, variant, seed))
    for path in student_records():
        record = json.loads(path.read_text())
        where = (record["regime"], record["pair"], record["variant"], record["seed"])
        assert path == RESULTS / "runs" / where[0] / where[1] / f"{where[2]}-s{where[3]}.json"
        assert where in cells and record["cell_digest"] == cells[where] == digest(record["cell"]), path
        assert 0.0 <= record["test_top1"] <= 100.0 and record["test_images"] == 10_000, path
        assert len(record["curve"]) == record["epochs"] == regimes[where[0]].epochs, path
        assert record["data_path"] == "batched" and record["commit"], path
