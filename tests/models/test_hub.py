"""Pretrained tags and Hugging Face Hub repos, loaded through timm and huggingface_hub as users load them.

Offline (``HF_HUB_OFFLINE=1``): each test fills a Hub cache of its own with weights made here, in the
layout ``hf download`` leaves, and the real timm / huggingface_hub code reads them from there.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save
from timm.models import save_for_hf

import ofakd
from ofakd.config.schema import TeacherConfig
from ofakd.errors import ModelError
from ofakd.teacher.run_teacher import build_teacher_model
from tests.hub_files import TAG, TAG_REPO, put_in_hub_cache


def safetensors_bytes(model: torch.nn.Module) -> bytes:
    return save({k: v.contiguous() for k, v in model.state_dict().items()}, metadata={"format": "pt"})


def assert_same_weights(model: torch.nn.Module, source: torch.nn.Module, skip: tuple[str, ...] = ()) -> None:
    theirs = source.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith(skip):
            assert torch.equal(value, theirs[key]), key


@pytest.fixture
def cached_tag(hub_cache):
    """The tag's repo in the Hub cache, holding weights made here (1000 classes, as the tag's)."""
    torch.manual_seed(3)
    source = timm.create_model("test_byobnet")
    put_in_hub_cache(hub_cache, TAG_REPO, {"model.safetensors": safetensors_bytes(source)})
    return source


def test_a_pretrained_tag_loads_its_weights_from_the_hub_cache(cached_tag):
    model = ofakd.create_model(TAG, pretrained=True)
    assert_same_weights(model, cached_tag)
    assert not torch.equal(ofakd.create_model(TAG).stem.conv.weight, cached_tag.stem.conv.weight)


def test_other_classes_keep_the_pretrained_body_and_get_a_new_classifier(cached_tag):
    model = ofakd.create_model(TAG, pretrained=True, num_classes=10)
    assert model.head.fc.out_features == 10
    assert_same_weights(model, cached_tag, skip=("head.fc.",))


def test_a_config_teacher_with_pretrained_true_gets_the_hub_weights(cached_tag):
    cfg = TeacherConfig(name=TAG, pretrained=True, input_size=(3, 32, 32))
    model, spec = build_teacher_model(cfg, num_classes=10)
    assert spec.input_size == (3, 32, 32)
    assert_same_weights(model, cached_tag, skip=("head.fc.",))


def test_a_hub_repo_gives_the_architecture_its_kwargs_and_the_weights(hub_cache):
    torch.manual_seed(4)
    source = timm.create_model("vit_tiny_patch16_224", num_classes=5, img_size=32, patch_size=8, depth=2,
                               embed_dim=32, num_heads=2)
    with tempfile.TemporaryDirectory() as tmp:  # what timm's push_to_hf_hub uploads: config.json + weights
        save_for_hf(source, tmp, model_args={"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32,
                                             "num_heads": 2}, safe_serialization="both")
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.name in ("config.json", "model.safetensors")}
    put_in_hub_cache(hub_cache, "someone/tiny-vit", files)
    model = ofakd.create_model("hf-hub:someone/tiny-vit", pretrained=True)
    assert model.num_classes == 5 and len(model.blocks) == 2 and model.patch_embed.img_size == (32, 32)
    assert_same_weights(model, source)


def test_an_unknown_tag_lists_the_architectures_tags():
    with pytest.raises(ModelError, match=r"model 'test_byobnet' has no pretrained tag 'foo'; its tags: test_byobnet\.r160"):
        ofakd.create_model("test_byobnet.foo")


def test_config_pretrained_must_be_true_or_an_existing_file(tmp_path):
    cfg = TeacherConfig(name=TAG, pretrained=str(tmp_path / "nope.pth"))
    with pytest.raises(ModelError, match=r"teacher.pretrained: .*nope.pth' does not exist; .*or true for the Hub weights"):
        build_teacher_model(cfg, num_classes=10)
