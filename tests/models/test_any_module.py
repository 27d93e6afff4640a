"""Any nn.Module as student or teacher: classes from the last Linear, stage features from named modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ofakd
from ofakd.distill.kd import kd_loss
from ofakd.errors import ModelError
from ofakd.models import ModelTap
from ofakd.models.info import num_classes, num_features
from tests.tiny_models import SmallCNN, tiny

STAGES = ["layer1", "layer2", "layer3", "layer4"]


class TokenMLP(nn.Module):
    """A hand-written token model: 4x4 patches -> tokens (B, N, D) -> MLP blocks -> mean -> Linear."""

    def __init__(self, classes: int = 10, dim: int = 32) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU()) for _ in range(4))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = tokens + block(tokens)
        return self.head(tokens.mean(dim=1))


def test_classes_and_width_come_from_the_last_linear():
    model = SmallCNN(classes=7, width=4)
    assert (num_classes(model), num_features(model)) == (7, 32)
    model.num_classes = 5  # an attribute, when the model has one, wins
    assert num_classes(model) == 5
    with pytest.raises(ModelError, match=r"Conv2d has no num_classes attribute and no nn.Linear.*set model.num_classes"):
        num_classes(nn.Conv2d(3, 4, 1))


def test_plain_modules_distil_with_kd():
    torch.manual_seed(0)
    teacher, student = SmallCNN(width=8), SmallCNN(width=4)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    with torch.no_grad():
        z_t = teacher.eval()(x)  # before create_distiller folds its BatchNorms (same function)
    distiller = ofakd.create_distiller("kd", teacher=teacher, student=student, input_size=(3, 16, 16), temperature=2.0)
    logits, losses = distiller(x, y)
    torch.testing.assert_close(logits, student(x))
    torch.testing.assert_close(losses["kd"], kd_loss(student(x), z_t, 2.0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses["gt"], F.cross_entropy(student(x), y))


def test_named_stage_modules_give_their_outputs_and_the_classifier_input():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 16, 16)
    tap = ModelTap.stages(model, embedding=True, modules=STAGES)
    with torch.no_grad():
        out = tap(x)
        f0 = model.layer1(model.stem(x))
        f3 = model.layer4(model.layer3(model.layer2(f0)))
        expected_logits = model(x)
    assert tap.positions == [0, 1, 2, 3] and tap.names == STAGES
    torch.testing.assert_close(out.features[0], f0)
    torch.testing.assert_close(out.features[3], f3)
    torch.testing.assert_close(out.embedding, f3.mean(dim=(2, 3)))
    torch.testing.assert_close(out.logits, expected_logits)


def test_ofa_branch_of_stage_1_trains_from_layer1_of_a_plain_student():
    teacher = tiny("deit", size=16)
    student = SmallCNN()
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, input_size=(3, 16, 16),
                                       student_stages=STAGES)
    _, losses = distiller(torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,)))
    assert sorted(losses) == ["gt", "kd", "ofa_s1", "ofa_s2", "ofa_s3", "ofa_s4"]
    losses["ofa_s1"].backward()
    assert student.layer1[0].weight.grad.abs().sum() > 0  # the stage-1 feature is layer1's output ...
    assert student.layer2[0].weight.grad is None  # ... and nothing after it
    assert distiller.branches["stage1"][-1].out_features == 10


def test_fitnet_reads_a_plain_teacher_and_a_plain_token_student_by_name():
    torch.manual_seed(0)
    teacher, student = SmallCNN(), TokenMLP()
    distiller = ofakd.create_distiller(
        "fitnet", teacher=teacher, student=student, input_size=(3, 16, 16),
        student_stages=["blocks.0", "blocks.1", "blocks.2", "blocks.3"], teacher_stages=STAGES,
    )
    x = torch.randn(2, 3, 16, 16)
    out = distiller.teacher(x)
    with torch.no_grad():  # the teacher's layer1 (its BatchNorm folded: equal to rounding)
        expected = teacher.layer1(teacher.stem(x.contiguous(memory_format=torch.channels_last)))
    torch.testing.assert_close(out.features[0], expected, atol=1e-5, rtol=1e-4)
    _, losses = distiller(x, torch.tensor([1, 2]))
    assert all(torch.isfinite(v) for v in losses.values()) and "fitnet_s4" in losses


def test_embedding_methods_read_the_classifier_input_of_plain_modules():
    distiller = ofakd.create_distiller("rkd", teacher=SmallCNN(width=8), student=TokenMLP(), input_size=(3, 16, 16))
    x = torch.randn(3, 3, 16, 16)
    student_out = distiller.student_tap(x)
    assert student_out.embedding.shape == (3, 32)  # TokenMLP's head input: the token mean
    assert distiller.teacher(x).embedding.shape == (3, 64)


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (None, r"SmallCNN has no timm feature_info.*student_stages=\[...\].*top-level modules: stem, layer1"),
        (["layer1", "layer2", "layer3", "layer5"], r"SmallCNN has no module 'layer5'; did you mean layer4"),
        (["layer1", "layer2"], r"name 4 modules .* got \['layer1', 'layer2'\]"),
    ],
    ids=["no-names", "unknown-name", "two-names"],
)
def test_stage_name_errors_name_the_module_and_the_fix(stages, message):
    with pytest.raises(ModelError, match=message):
        ofakd.create_distiller("ofa", teacher=tiny("deit", size=16), student=SmallCNN(), input_size=(3, 16, 16),
                               student_stages=stages)


def test_a_stage_module_that_returns_no_tensor_or_never_runs_is_named():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x.mean()

    class UsesPair(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pair, self.fc = nn.Conv2d(3, 4, 3), Pair(), nn.Linear(4, 2)

        def forward(self, x):
            features, _ = self.pair(self.conv(x))
            return self.fc(features.mean(dim=(2, 3)))

    with pytest.raises(ModelError, match=r"module 'pair' of UsesPair gives tuple, not a map"):
        ModelTap(UsesPair(), [1], modules=["conv", "pair", "pair", "pair"])(torch.randn(1, 3, 8, 8))
    model = SmallCNN()
    model.extra = nn.ReLU()  # registered but never called by forward
    with pytest.raises(ModelError, match=r"module 'extra' of SmallCNN did not run in its forward"):
        ModelTap(model, [3], modules=["layer1", "layer2", "layer3", "extra"])(torch.randn(1, 3, 16, 16))
