"""A teacher model's view of batches given in Python (``create_distiller``, ``ofakd.fit``): re-normalised from the
data's normalisation to the teacher's pretrained config, channels matched, resized only for a fixed-size teacher."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import TensorDataset

import ofakd
from ofakd.errors import ConfigError, ModelError
from ofakd.evaluation import eval_loader, load_student
from ofakd.teacher import DataView
from tests.conftest import TINY_CNN, TINY_VIT
from tests.tiny_models import SmallCNN, tiny

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


def augreg_vit(size: int = 16):
    """A ViT whose pretrained config normalises with mean = std = 0.5 (timm's augreg weights)."""
    return ofakd.create_model("vit_tiny_patch16_224", num_classes=10, **{**TINY_VIT, "img_size": size})


def cnn(**kwargs):
    """A timm CNN whose pretrained config normalises with ImageNet's mean and std, at any input size."""
    return ofakd.create_model(TINY_CNN, num_classes=10, **kwargs)


def test_the_teacher_sees_the_batch_renormalised_from_the_given_mean_and_std():
    torch.manual_seed(0)
    distiller = ofakd.create_distiller("kd", teacher=cnn(), student=augreg_vit(), mean=HALF, std=HALF)
    images = torch.randn(2, 3, 16, 16)
    pixels = images * 0.5 + 0.5
    expected = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    seen = distiller.teacher.view(images)
    assert seen.shape == (2, 3, 16, 16)  # a CNN is fed the batch's own size
    torch.testing.assert_close(seen, expected, rtol=0, atol=1e-6)


def test_teacher_and_student_that_agree_take_the_batch_as_it_is():
    teacher, student = cnn(), tiny("deit", size=16)  # both ImageNet's mean and std
    distiller = ofakd.create_distiller("kd", teacher=teacher, student=student)
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(distiller.teacher.view(images), images)
    assert distiller.teacher.input_view.problem is None


def test_a_plain_module_teacher_keeps_the_data_normalisation_and_gets_its_channels():
    view = DataView(SmallCNN(), augreg_vit(), (1, 16, 16))  # no pretrained config: it expects what the data have
    view.normalised_with((0.3,), (0.2,))
    images = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(view(images), images.expand(-1, 3, -1, -1), rtol=0, atol=1e-6)
    assert view.problem is None


def test_only_a_fixed_size_teacher_or_an_asked_size_resizes_the_batch():
    fixed = DataView(tiny("deit", size=32), cnn(), (3, 16, 16))
    assert fixed.teacher_size == (3, 32, 32) and fixed(torch.zeros(2, 3, 16, 16)).shape == (2, 3, 32, 32)
    any_size = DataView(cnn(), tiny("deit", size=16), (3, 16, 16))
    assert any_size.teacher_size == (3, 16, 16) and any_size.identity  # not upsampled to its config's 224
    asked = ofakd.create_distiller("kd", teacher=cnn(), student=tiny("deit", size=16), teacher_size=24)
    assert asked.teacher.view(torch.zeros(2, 3, 16, 16)).shape == (2, 3, 24, 24)
    with pytest.raises(ModelError, match="teacher_size= .* cannot apply to teacher_input="):
        ofakd.create_distiller("kd", teacher=cnn(), student=tiny("deit", size=16), teacher_size=24,
                               teacher_input=lambda x: x)


def test_an_unknown_normalisation_that_matters_is_an_error_naming_mean_and_std():
    distiller = ofakd.create_distiller("kd", teacher=cnn(), student=augreg_vit())
    with pytest.raises(ConfigError, match=r"teacher expects inputs normalised with mean \[0.485.*student with mean "
                                          r"\[0.5.*pass mean= and std= .* to ofakd.fit or create_distiller"):
        distiller(torch.randn(2, 3, 16, 16), torch.tensor([0, 1]))
    distiller.normalised_with(HALF, HALF)  # once given, it is fed
    assert distiller(torch.randn(2, 3, 16, 16), torch.tensor([0, 1]))[0].shape == (2, 10)
    with pytest.raises(ConfigError, match="pass the same mean=/std= to create_distiller and ofakd.fit"):
        distiller.normalised_with(IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ConfigError, match="needs both mean= and std="):
        ofakd.create_distiller("kd", teacher=cnn(), student=augreg_vit(), mean=HALF)


def test_an_explicit_teacher_input_replaces_the_view():
    distiller = ofakd.create_distiller("kd", teacher=cnn(), student=augreg_vit(), teacher_input=lambda x: x * 2)
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(distiller.teacher.view(images), images * 2)
    assert distiller(images, torch.tensor([0, 1]))[0].shape == (2, 10)  # no normalisation asked for


# ---- a teacher trained with `ofakd train`, inside ofakd.fit on differently normalised data -------------------


@pytest.fixture(scope="module")
def cli_teacher(tmp_path_factory):
    """A CNN trained on the digits by `ofakd train` (16 px, ImageNet's normalisation) and its `ofakd eval` top-1."""
    from ofakd.cli import main

    out = tmp_path_factory.mktemp("teacher")
    assert main(["train", "--config", "demo", "--model", TINY_CNN, "--set", "student.kwargs={}", "--student.input_size",
                 "[3, 16, 16]", "--epochs", "2", "--lr", "4e-3", "--out-dir", str(out), "--name", "teacher"]) == 0
    return out / "teacher"


def test_a_cli_trained_teacher_scores_inside_fit_what_ofakd_eval_gives_it(cli_teacher, tmp_path, capsys):
    from ofakd.cli import main

    capsys.readouterr()
    assert main(["eval", str(cli_teacher), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    teacher, info = load_student(cli_teacher)
    assert info.preprocess.mean == IMAGENET_MEAN and evaluated["top1"] > 50
    loader, _ = eval_loader(info)  # the same validation images, normalised for the teacher
    images, targets = (torch.cat(parts) for parts in zip(*loader))
    imagenet = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    half = (images * imagenet[1] + imagenet[0] - 0.5) / 0.5  # ... normalised with mean = std = 0.5 instead
    val = TensorDataset(half, targets)
    settings = dict(epochs=1, batch_size=32, progress=False, tensorboard=False, log=lambda _m: None)

    distiller = ofakd.create_distiller("kd", teacher=teacher, student=augreg_vit())
    with pytest.raises(ConfigError, match="pass mean= and std="):  # the student's 0.5 is a guess: no silent teacher
        ofakd.fit(distiller, TensorDataset(half[:64], targets[:64]), val, out_dir=tmp_path, name="unsaid", **settings)
    assert not (tmp_path / "unsaid").exists()

    run = ofakd.fit(distiller, TensorDataset(half[:64], targets[:64]), val, out_dir=tmp_path, name="said", mean=HALF,
                    std=HALF, **settings)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["teacher_top1"] == pytest.approx(evaluated["top1"], abs=1e-9)
