"""The teacher source owns its behaviour: the distiller holds it and asks it for its epochs, a Distiller takes
only a source, nothing outside ``ofakd.teacher`` and ``ofakd.cache`` asks which kind it is, and a method that
reads teacher features meets one check with one error type."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import ofakd
from ofakd.errors import CacheError, ConfigError, ModelError, TeacherFeaturesError
from ofakd.models import ModelOutput
from ofakd.teacher import LiveTeacher, TeacherSource
from ofakd.teacher.feature_check import check_features
from tests.tiny_models import tiny

ROOT = Path(ofakd.__file__).parent
TEACHER_TYPES = {"LiveTeacher", "CachedTeacher", "TeacherSource", "TeacherCache", "DataView", "TeacherInput"}


class Replay:
    """A logits-only teacher source that records what the run asks of it (as a cache's replay would be asked)."""

    gives_features = False
    num_classes, num_features = 10, 8

    def __init__(self, recorded_epochs: int) -> None:
        self.recorded_epochs, self.started = recorded_epochs, []

    def data_epoch(self, epoch: int) -> int:
        return epoch % self.recorded_epochs

    def start_epoch(self, epoch: int, step: int = 0) -> None:
        self.started.append((epoch, step))

    def normalised_with(self, mean, std) -> None: ...

    def check_input(self) -> None: ...

    def scorer(self):
        return None

    def run_note(self) -> str:
        return ""

    def __call__(self, images, sample_indices=None) -> ModelOutput:
        return ModelOutput(torch.zeros(images.shape[0], self.num_classes))


def test_nothing_outside_teacher_and_cache_asks_which_kind_of_teacher_it_has():
    """No ``isinstance``/``issubclass`` on a teacher type in ofakd (tuning included), bench or examples, but in the
    two packages that define them."""
    repo = ROOT.parent.parent
    files = [*ROOT.rglob("*.py"), *(repo / "bench").rglob("*.py"), *(repo / "examples").rglob("*.py")]
    found = []
    for path in files:
        if path.is_relative_to(ROOT / "teacher") or path.is_relative_to(ROOT / "cache"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("isinstance", "issubclass"):
                named = {getattr(n, "id", getattr(n, "attr", "")) for n in ast.walk(node.args[1])}
                if named & TEACHER_TYPES:
                    found.append(f"{path.relative_to(repo)}:{node.lineno}")
    assert found == []


def test_the_distiller_owns_its_teacher_and_starts_it_at_the_epoch_it_replays():
    replay = Replay(recorded_epochs=2)
    assert isinstance(replay, TeacherSource)
    distiller = ofakd.create_distiller("kd", replay, tiny("resnet"), input_size=(3, 32, 32))
    assert distiller.teacher is replay
    assert [distiller.data_epoch(e) for e in range(5)] == [0, 1, 0, 1, 0]
    distiller.start_epoch(3, step=7)  # a resume 7 steps into epoch 3 (0-based) replays recorded epoch 1 from step 7
    assert replay.started == [(1, 7)]
    live = ofakd.create_distiller("kd", tiny("resnet"), tiny("resnet"), input_size=(3, 32, 32))
    assert isinstance(live.teacher, LiveTeacher) and [live.data_epoch(e) for e in range(3)] == [0, 1, 2]
    assert ofakd.create_distiller("vanilla", None, tiny("resnet"), input_size=(3, 32, 32)).data_epoch(4) == 4


def test_a_distiller_takes_a_teacher_source_and_no_model():
    distiller = ofakd.create_distiller("kd", tiny("resnet"), tiny("resnet"), input_size=(3, 32, 32))  # run live
    with pytest.raises(ModelError, match="a Distiller takes a teacher source .* not a ResNet: build it with "
                                         "ofakd.create_distiller"):
        distiller.replace_teacher(tiny("resnet"))
    distiller.replace_teacher(Replay(1))  # a logit method: any source


def test_needing_teacher_features_is_one_check_with_one_error_type():
    assert issubclass(TeacherFeaturesError, CacheError) and issubclass(TeacherFeaturesError, ConfigError)
    fitnet = ofakd.distill.get_method("fitnet")
    for source in (None, Replay(1), Replay):  # no teacher, a logits-only source, or its class before one is made
        with pytest.raises(TeacherFeaturesError, match="method 'fitnet' needs teacher features that a logits-only"):
            check_features(fitnet, source)
    check_features(fitnet, LiveTeacher(nn.Linear(4, 10)))
    check_features(ofakd.distill.get_method("kd"), None)  # a logit method reads no features
    with pytest.raises(TeacherFeaturesError):
        ofakd.create_distiller("fitnet", Replay(1), tiny("resnet"), input_size=(3, 32, 32))
    distiller = ofakd.create_distiller("rkd", tiny("resnet"), tiny("resnet"), input_size=(3, 32, 32))
    with pytest.raises(TeacherFeaturesError):
        distiller.replace_teacher(Replay(1))
    with pytest.raises(TeacherFeaturesError, match=r"method 'rkd' needs teacher features \(stages \[\], embedding\)"):
        distiller.distill(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long), ModelOutput(torch.zeros(2, 10)))
