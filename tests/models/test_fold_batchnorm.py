"""Folding a frozen teacher's BatchNorms into its convolutions keeps its function, and only folds what is safe."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import ofakd
from ofakd.models import ModelOutput
from ofakd.models.fold_batchnorm import conv_batchnorm_pairs, fold_batchnorm
from tests.tiny_models import tiny


def _randomise_statistics(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, so folding them changes the conv weights."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return model.eval()


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("family", ["resnet", "mobilenetv2", "mobilenetv3", "efficientnet"])
def test_folded_model_computes_the_same_logits_without_its_batchnorms(family):
    model = _randomise_statistics(tiny(family))
    reference = copy.deepcopy(model)
    x = torch.randn(2, 3, 32, 32)
    before = _count(model, nn.BatchNorm2d)
    folded = fold_batchnorm(model)
    assert folded == before > 0  # every BatchNorm of these families follows a conv
    assert _count(model, nn.BatchNorm2d) == 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)
        features = ofakd.models.ModelTap.stages(model)(x).features
        reference_features = ofakd.models.ModelTap.stages(reference)(x).features
    assert features.keys() == reference_features.keys()
    for ours, theirs in zip(features.values(), reference_features.values()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_batchnorm_act_keeps_its_activation():
    model = _randomise_statistics(tiny("efficientnet"))
    fold_batchnorm(model)
    remains = model.get_submodule("bn1")
    assert isinstance(remains, nn.Sequential) and isinstance(remains[1], nn.SiLU)


def test_models_without_batchnorm_are_left_alone():
    model = tiny("deit").eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert fold_batchnorm(model) == 0
    assert model.state_dict().keys() == state.keys()


class _ConvReadTwice(nn.Module):
    """conv's output feeds the BatchNorm and a skip: folding would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class _SharedConv(nn.Module):
    """One conv called twice, once before a BatchNorm: folding would change the other call."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.conv(x)


class _NotTraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent branch: torch.fx cannot trace it
            x = -x
        return self.bn(self.conv(x))


class _WeightStandardised(nn.Conv2d):
    """A conv that rewrites its weight at every call: a folded weight would be rewritten too."""

    def forward(self, x):
        w = (self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)) / (self.weight.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


@pytest.mark.parametrize("model_class", [_ConvReadTwice, _SharedConv, _NotTraceable])
def test_unsafe_pairs_are_not_folded(model_class):
    model = _randomise_statistics(model_class())
    reference = copy.deepcopy(model)
    assert fold_batchnorm(model) == 0
    x = torch.randn(2, model.conv.in_channels, 8, 8)
    torch.testing.assert_close(model(x), reference(x))


def test_conv_subclasses_and_training_batchnorms_are_not_folded():
    model = nn.Sequential(_WeightStandardised(3, 4, 3), nn.BatchNorm2d(4)).eval()
    assert conv_batchnorm_pairs(model) == []
    training = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    assert conv_batchnorm_pairs(training) == []
    assert conv_batchnorm_pairs(training.eval()) == [("0", "1")]


def test_distiller_folds_its_teacher_and_its_losses_match_the_unfolded_teacher():
    teacher = _randomise_statistics(tiny("resnet"))
    unfolded = copy.deepcopy(teacher)
    distiller = ofakd.create_distiller("kd", teacher=teacher, student=tiny("deit"), input_size=(3, 32, 32))
    assert _count(distiller.teacher, nn.BatchNorm2d) == 0
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        _, live = distiller(x, y)
        _, given = distiller.distill(x, y, ModelOutput(unfolded(x)))
    for name in live:
        torch.testing.assert_close(live[name], given[name], rtol=1e-4, atol=1e-5)
