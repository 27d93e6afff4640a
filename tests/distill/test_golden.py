"""Golden values: every method's loss terms (and OFA's branch logits) on fixed seeds, against
``fixtures/golden_losses.json``. A change to a loss formula, a default option, a branch's structure
or its init moves a number and fails here; if the change is deliberate, regenerate the fixture in
the same commit (see ``fixtures/make_golden.py``)."""

import json

import pytest
import torch

from tests.golden_cases import CASES, FIXTURE, compute_values, versions

RELATIVE = 1e-6
ABSOLUTE_FLOOR = 1e-8
"""For values near 0 (a few float32 roundings of O(0.1) terms)."""


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(FIXTURE.read_text())


def test_fixture_has_exactly_the_defined_cases(golden):
    assert sorted(golden["cases"]) == sorted(CASES), "add or drop the case in the fixture: run make_golden.py"


@pytest.mark.parametrize("name", list(CASES))
def test_values_match_the_fixture(name, golden):
    expected, got = golden["cases"][name], compute_values(name)
    assert sorted(got) == sorted(expected), "the case computes other terms than the fixture holds"
    moved = {
        key: f"{got[key]!r} (fixture {expected[key]!r})"
        for key in expected
        if got[key] != pytest.approx(expected[key], rel=RELATIVE, abs=ABSOLUTE_FLOOR)
    }
    note = "" if golden["versions"] == versions() else f"; fixture made with {golden['versions']}, now {versions()}"
    assert not moved, f"{name}: {moved}{note}. Deliberate? Regenerate with tests/fixtures/make_golden.py."


def test_values_do_not_depend_on_earlier_random_draws():
    """CRD draws its memory bank and negatives from the global generator: seeded inside the case."""
    first = compute_values("crd")
    torch.rand(1000)
    assert compute_values("crd") == first
