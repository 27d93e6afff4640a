"""``ofakd.evaluation``: evaluate() numbers equal a direct computation; loading a student and its data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ofakd
from ofakd.config import load_config
from ofakd.engine import fit
from ofakd.evaluation import EvalResult, eval_loader, evaluate, load_student, resolve_data
from ofakd.export import export_student

NUM_CLASSES = 7


def _tiny_data(n: int = 23, seed: int = 0):
    """Random 2x3x3 'images' and labels where class 6 never occurs (its accuracy is undefined)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 3, 3, generator=g)
    y = torch.randint(0, NUM_CLASSES - 1, (n,), generator=g)
    return x, y


def _tiny_model(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(18, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, NUM_CLASSES))


def test_evaluate_equals_a_direct_computation():
    x, y = _tiny_data()
    model = _tiny_model()
    model.train()
    result = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=5), NUM_CLASSES, device="cpu")
    assert model.training  # mode restored

    model.eval()
    with torch.no_grad():
        logits = model(x)
    pred = logits.argmax(dim=1)
    top5 = logits.topk(5, dim=1).indices
    assert result.count == len(y)
    assert result.top1 == pytest.approx(100.0 * (pred == y).float().mean().item())
    assert result.top5 == pytest.approx(100.0 * (top5 == y[:, None]).any(dim=1).float().mean().item())
    assert result.mean_loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    for c in range(NUM_CLASSES):
        members = y == c
        assert result.per_class_count[c] == int(members.sum())
        if members.any():
            assert result.per_class_accuracy[c] == pytest.approx(100.0 * (pred[members] == c).float().mean().item())
        else:
            assert result.per_class_accuracy[c] is None
    assert result.images_per_s > 0 and result.seconds > 0


def test_top5_with_fewer_than_five_classes_and_soft_targets():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(10, 4, generator=g), torch.randint(0, 3, (10,), generator=g)
    model = nn.Linear(4, 3)
    soft = F.one_hot(y, 3).float() * 0.9 + 0.1 / 3
    result = evaluate(model, [(x, soft)], 3)
    with torch.no_grad():
        logits = model(x)
    assert result.top5 == 100.0  # top-3 of 3 classes
    assert result.top1 == pytest.approx(100.0 * (logits.argmax(1) == y).float().mean().item())
    assert result.mean_loss == pytest.approx(F.cross_entropy(logits, soft).item(), rel=1e-6)


def test_result_as_json_and_text():
    result = evaluate(_tiny_model(), DataLoader(TensorDataset(*_tiny_data()), batch_size=8), NUM_CLASSES)
    names = [f"class_{i}" for i in range(NUM_CLASSES)]
    data = json.loads(json.dumps(result.to_dict(names)))
    assert set(data) >= {"top1", "top5", "per_class_accuracy", "mean_loss", "images_per_s", "count", "class_names"}
    assert data["per_class_accuracy"][-1] is None
    text = result.format(names)
    assert text.splitlines()[0].startswith(f"top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%")
    assert "class_6      n/a  (0 images)" in text
    assert isinstance(result, EvalResult)


def test_wrong_number_of_classes_is_a_clear_error():
    from ofakd.errors import DataError

    with pytest.raises(DataError, match="logits of shape"):
        evaluate(_tiny_model(), DataLoader(TensorDataset(*_tiny_data()), batch_size=8), 10)


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    kwargs = {"img_size": 16, "patch_size": 4, "depth": 1, "embed_dim": 32, "num_heads": 2}
    cfg = load_config("demo", [
        ("method", {"name": "vanilla"}),
        ("student", {"name": "vit_tiny_patch16_224", "kwargs": kwargs, "input_size": [3, 16, 16]}),
        ("data.train_subset", 32), ("data.val_subset", 24), ("train.batch_size", 16), ("train.epochs", 1),
        ("train.device", "cpu"), ("run.out_dir", str(out)), ("run.name", "vit"),
    ])
    fit(cfg, progress=False, tensorboard=False, log=lambda _msg: None)
    return out / "vit"


def test_a_run_folder_best_safetensors_and_timm_export_evaluate_alike(vit_run, tmp_path):
    summary = json.loads((vit_run / "summary.json").read_text())
    results = {}
    for key, path in (("run", vit_run), ("weights", vit_run / "best.safetensors")):
        model, info = load_student(path)
        loader, names = eval_loader(info, batch_size=10)
        assert names == [str(i) for i in range(10)] and info.kind == key
        results[key] = evaluate(model, loader, info.num_classes)
    # the engine's own evaluation of these weights, reproduced with the run's data and preprocessing
    assert results["run"].top1 == pytest.approx(summary["best_top1"])
    assert results["run"].count == summary["val_images"] == 24

    # the training split (plain resize) and a data override
    model, info = load_student(vit_run)
    loader, _ = eval_loader(info, split="train", batch_size=10)
    assert evaluate(model, loader, info.num_classes).count == 32
    loader, _ = eval_loader(info, resolve_data(info, [("data.val_subset", 8), ("train.lr", 1.0)]))
    assert evaluate(model, loader, info.num_classes).count == 8

    export_student(vit_run, "timm", tmp_path / "timm")
    model, info = load_student(tmp_path / "timm")
    assert info.kind == "timm" and info.data is not None  # the export remembers the run's data set
    loader, _ = eval_loader(info, batch_size=10)
    results["timm"] = evaluate(model, loader, info.num_classes)
    for key in ("weights", "timm"):
        assert results[key].top1 == results["run"].top1
        assert results[key].per_class_accuracy == results["run"].per_class_accuracy
        assert results[key].mean_loss == pytest.approx(results["run"].mean_loss, abs=1e-5)


def test_every_model_handed_back_resolves_to_its_own_preprocessing(vit_run, tmp_path):
    """timm's data config of a loaded student (run folder, weights file, timm export), of a teacher rebuilt from a
    run folder, and of create_model's models is the input they really take, not timm's 224 px default."""
    import shutil

    from timm.data import create_transform, resolve_data_config

    from ofakd.run_folder import RunRecord
    from ofakd.teacher.run_teacher import build_teacher_model
    from ofakd.teacher.teacher_config import TeacherConfig

    export_student(vit_run, "timm", tmp_path / "timm")
    alone = shutil.copy(vit_run / "best.safetensors", tmp_path / "alone.safetensors")  # no config.yaml beside it
    ran = {"input_size": (3, 16, 16), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
           "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "squash"}  # the demo recipe's, at 16 px
    expected = {vit_run: ran, vit_run / "best.safetensors": ran, tmp_path / "timm": ran,
                alone: {**ran, "interpolation": "bicubic"}}  # its metadata has no interpolation: a bicubic resize
    models = {source: load_student(source)[0] for source in expected}
    for source, model in models.items():
        assert resolve_data_config({}, model=model) == expected[source], source
        image = Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).convert("RGB")
        assert model(create_transform(**expected[source])(image)[None]).shape == (1, 10), source

    teacher, _ = build_teacher_model(TeacherConfig(**RunRecord.at(vit_run).teacher_section()), 10)
    assert {k: v for k, v in resolve_data_config({}, model=teacher).items() if k in ("input_size", "mean", "std")} == {
        "input_size": (3, 16, 16), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    made = ofakd.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, depth=1, embed_dim=32,
                              num_heads=2, in_chans=1)
    assert {k: v for k, v in resolve_data_config({}, model=made).items() if k in ("input_size", "mean", "std")} == {
        "input_size": (1, 32, 32), "mean": (0.5,), "std": (0.5,)}
    assert "test_input_size" not in ofakd.create_model("resnet18").pretrained_cfg  # timm's 288 px test size is not its
