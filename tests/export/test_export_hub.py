"""``ofakd export --format timm`` writes a Hub repo: config.json, model.safetensors and a model card, with no
local path in any file; ``--push-to-hub`` is refused offline. A Hub cache holding the export's files loads
with plain timm (``hf-hub:``), offline."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml

from ofakd.config import load_config
from ofakd.config.load import apply_override, validate
from ofakd.engine import fit
from ofakd.export import export_student
from tests.conftest import write_imagefolder
from tests.hub_files import put_in_hub_cache

ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[\w.-]+/")
"""A path from the file-system root (URLs such as https://host/... do not match)."""


def readable_text(path: Path) -> str:
    """A file's text; of a safetensors file, its JSON header (names, shapes, metadata: the rest is numbers)."""
    data = path.read_bytes()
    if path.suffix == ".safetensors":
        data = data[8:8 + int.from_bytes(data[:8], "little")]
    return data.decode("utf-8")


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory) -> Path:
    """A KD run from a local teacher checkpoint on an image folder: both paths absolute, as users give them."""
    tmp = tmp_path_factory.mktemp("hubexport")
    root = write_imagefolder(tmp / "pets")
    torch.manual_seed(1)
    teacher = timm.create_model("test_byobnet", num_classes=3)
    torch.save(teacher.state_dict(), tmp / "teacher.pth")
    overrides = [
        ("data", {"name": "imagefolder", "root": str(root)}),
        ("teacher", {"name": "test_byobnet", "checkpoint": str(tmp / "teacher.pth"), "input_size": [3, 32, 32]}),
        ("student", {"name": "resnet18", "input_size": [3, 32, 32]}),
        ("method", {"name": "kd", "temperature": 2.0}),
        ("train.batch_size", 12), ("train.epochs", 1), ("train.device", "cpu"),
        ("run.out_dir", str(tmp / "runs")), ("run.name", "pets-kd"),
    ]
    fit(load_config("demo", overrides), progress=False, tensorboard=False, log=lambda _msg: None)
    return tmp / "runs" / "pets-kd"


def test_the_export_is_a_hub_repo_with_a_model_card_and_no_local_paths(distill_run, tmp_path):
    out = tmp_path / "export"
    result = export_student(distill_run, "timm", out, repo_id="me/pets-resnet18")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert sorted(result.files) == ["README.md", "config.json", "model.safetensors"]
    for path in out.iterdir():
        text = readable_text(path)
        assert str(distill_run.parent.parent) not in text, path.name  # the test's own folder
        assert not ABSOLUTE_PATH.search(text), (path.name, ABSOLUTE_PATH.search(text).group(0))
    card = (out / "README.md").read_text()
    summary = result.info.summary
    assert card.startswith("---\nlibrary_name: timm\n")
    assert "| teacher | `test_byobnet` (weights of its own; top-1" in card
    assert "| method | `kd` (temperature=2.0) |" in card
    assert "| data | imagefolder (36 train images, 12 val images) |" in card
    assert f"top-1 {summary['best_top1']:.2f} % on the validation split (epoch 1)" in card
    assert 'timm.create_model("hf-hub:me/pets-resnet18", pretrained=True)' in card
    command = "ofakd distill --config config.yaml --data.root DATA_ROOT --teacher-checkpoint TEACHER_WEIGHTS"
    assert command in card


def test_the_cards_recipe_and_command_reproduce_the_run_config(distill_run, tmp_path):
    export_student(distill_run, "timm", tmp_path / "export")
    card = (tmp_path / "export" / "README.md").read_text()
    recipe = yaml.safe_load(card.split("```yaml\n")[1].split("```")[0])
    run = yaml.safe_load((distill_run / "config.yaml").read_text())
    for key, flag_value in (("data.root", run["data"]["root"]), ("teacher.checkpoint", run["teacher"]["checkpoint"]),
                            ("run.out_dir", run["run"]["out_dir"])):
        apply_override(recipe, key, flag_value)  # what --data.root / --teacher-checkpoint / --out-dir give back
    assert validate(recipe).to_dict() == validate(run).to_dict()


def test_the_exported_files_load_from_the_hub_with_plain_timm(distill_run, tmp_path, hub_cache):
    out = tmp_path / "export"
    export_student(distill_run, "timm", out)
    put_in_hub_cache(hub_cache, "me/pets-resnet18", {p.name: p.read_bytes() for p in out.iterdir()})
    from_hub = timm.create_model("hf-hub:me/pets-resnet18", pretrained=True).eval()
    local = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_array_equal(from_hub(x).numpy(), local(x).numpy())
    assert from_hub.pretrained_cfg["input_size"] == (3, 32, 32) and from_hub.num_classes == 3


def test_push_to_hub_is_refused_offline_before_anything_is_written(distill_run, tmp_path, ofakd_cli):
    out = tmp_path / "export"
    code, _, err = ofakd_cli("export", distill_run, "--format", "timm", "--out", out, "--push-to-hub", "me/pets")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--push-to-hub me/pets: HF_HUB_OFFLINE is set" in err and "`hf upload me/pets DIR`" in err
    assert not out.exists()
    code, _, err = ofakd_cli("export", distill_run, "--format", "onnx", "--out", out, "--push-to-hub", "me/pets")
    assert code == 2 and "pass --format timm" in err and not out.exists()
