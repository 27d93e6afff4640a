"""Model creation, checkpoints, the official stage maps and the OFA branch sizes."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import ofakd
from ofakd.errors import ConfigError, ModelError
from ofakd.models import ModelTap, count_parameters, default_stage_indices
from tests.tiny_models import tiny


@pytest.mark.parametrize(
    ("name", "kwargs", "names"),
    [
        ("deit_tiny_patch16_224", {}, ["blocks.1", "blocks.3", "blocks.9", "blocks.11"]),
        ("vit_tiny_patch16_224", {"depth": 24}, ["blocks.1", "blocks.3", "blocks.21", "blocks.23"]),
        ("resmlp_12_224", {}, ["blocks.1", "blocks.3", "blocks.9", "blocks.11"]),
        ("resmlp_24_224", {}, ["blocks.1", "blocks.3", "blocks.21", "blocks.23"]),
        ("mixer_s16_224", {}, ["blocks.1", "blocks.3", "blocks.5", "blocks.7"]),
        ("resnet18", {}, ["layer1", "layer2", "layer3", "layer4"]),
        ("resnet50", {}, ["layer1", "layer2", "layer3", "layer4"]),
        ("convnext_tiny", {}, ["stages.0", "stages.1", "stages.2", "stages.3"]),
        ("swin_tiny_patch4_window7_224", {}, ["layers.0", "layers.1", "layers.2", "layers.3"]),
        ("mobilenetv2_100", {}, ["blocks.1", "blocks.2", "blocks.4", "head_input"]),
    ],
)
def test_official_stage_maps(name, kwargs, names):
    model = ofakd.create_model(name, num_classes=10, **kwargs)
    assert ModelTap.stages(model).names == names


def test_mobilenetv2_stage_features_are_strides_4_8_16_and_head_conv():
    model = ofakd.create_model("mobilenetv2_100", num_classes=10).eval()
    with torch.no_grad():
        tap = ModelTap.stages(model)
        out = tap(torch.randn(1, 3, 224, 224))
    logits, features = out.logits, out.select(tap.positions)
    assert [tuple(f.shape[1:]) for f in features] == [(24, 56, 56), (32, 28, 28), (96, 14, 14), (1280, 7, 7)]
    assert logits.shape == (1, 10)


@pytest.mark.parametrize("family", ["resnet", "deit", "vit_registers", "swin", "mixer", "mobilenetv2", "convnext"])
def test_tap_logits_equal_plain_forward(family):
    model = tiny(family).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tap = ModelTap.stages(model, embedding=True)
        out = tap(x)
        assert torch.allclose(out.logits, model(x), atol=1e-5)
    features = out.select(tap.positions)
    assert out.embedding.shape == (2, model.num_features)
    assert len(features) == 4 and all(f.dim() in (3, 4) for f in features)


def test_tokens_keep_prefix_tokens_first():
    model = tiny("vit_registers").eval()
    tap = ModelTap.stages(model)
    with torch.no_grad():
        features = tap(torch.randn(1, 3, 32, 32)).select(tap.positions)
    assert tap.num_prefix_tokens == 4 and not tap.has_class_token
    assert features[0].shape == (1, 4 + 64, 64)
    deit = ModelTap.stages(tiny("deit_distilled"))
    assert deit.num_prefix_tokens == 2 and deit.has_class_token


def test_small_isotropic_models_spread_stages():
    model = tiny("deit")  # 4 blocks
    assert default_stage_indices(model) == [0, 1, 2, 3]


def test_explicit_stage_indices_and_out_of_range():
    model = tiny("deit")
    assert ModelTap(model, [0, 0, 1, 4]).names == ["blocks.0", "blocks.0", "blocks.1", "head_input"]
    with pytest.raises(ModelError, match="stage index 9 is out of range"):
        ModelTap(model, [1, 2, 3, 9])
    tap = ModelTap(model, [1])
    tap.widen([1, 3])
    assert tap.positions == [1, 3]
    with pytest.raises(ModelError, match="stage index 7 is out of range"):
        tap.widen([7])


def test_a_logits_only_tap_is_the_plain_forward_of_any_module():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))  # no timm feature_info at all
    x = torch.randn(2, 3, 2, 2)
    out = ModelTap(model)(x)
    assert torch.equal(out.logits, model(x)) and out.features == {} and out.embedding is None


# Branch parameter counts of the official implementation (100 classes, 224-pixel models).
@pytest.mark.parametrize(
    ("teacher", "student", "millions"),
    [
        ("deit_tiny_patch16_224", "resnet18", 1.19),
        ("swin_tiny_patch4_window7_224", "resnet18", 1.63),
        ("deit_tiny_patch16_224", "mobilenetv2_100", 2.53),
        ("resnet50", "deit_tiny_patch16_224", 3.78),
        ("convnext_tiny", "resmlp_12_224", 14.94),
    ],
)
def test_branch_parameters_equal_official(teacher, student, millions):
    distiller = ofakd.create_distiller(
        "ofa",
        teacher=ofakd.create_model(teacher, num_classes=100),
        student=ofakd.create_model(student, num_classes=100),
    )
    assert round(count_parameters(distiller.branches) / 1e6, 2) == millions


# ---- checkpoints ------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["plain", "model", "state_dict", "module_prefix", "safetensors"])
def test_checkpoint_layouts_load(tmp_path, layout):
    source = tiny("deit")
    state = source.state_dict()
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pth")
    if layout == "plain":
        torch.save(state, path)
    elif layout == "model":
        torch.save({"model": state, "epoch": 3}, path)
    elif layout == "state_dict":
        torch.save({"state_dict": state, "optimizer": {}}, path)
    elif layout == "module_prefix":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = ofakd.create_model("deit_tiny_patch16_224", num_classes=10, checkpoint=path, img_size=32, patch_size=4,
                                depth=4, embed_dim=64, num_heads=2)
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_checkpoint_with_wrong_keys_names_counts(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(tiny("resnet").state_dict(), path)
    with pytest.raises(ModelError, match=r"missing .*unexpected") as err:
        ofakd.create_model("deit_tiny_patch16_224", num_classes=10, checkpoint=path, **{
            "img_size": 32, "patch_size": 4, "depth": 4, "embed_dim": 64, "num_heads": 2})
    assert "e.g." in str(err.value)


def test_checkpoint_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    with pytest.raises(ModelError, match="refused for safety"):
        ofakd.create_model("resnet18", num_classes=10, checkpoint=path)
    assert not marker.exists()


def test_missing_and_truncated_checkpoints(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ofakd.create_model("resnet18", num_classes=10, checkpoint=tmp_path / "nope.pth")
    path = tmp_path / "cut.pth"
    torch.save(tiny("resnet").state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelError, match="truncated"):
        ofakd.create_model("resnet18", num_classes=10, checkpoint=path)


# ---- errors -----------------------------------------------------------------------
def test_unknown_model_suggests_close_names():
    with pytest.raises(ModelError, match="resnet18"):
        ofakd.create_model("resnet_18", num_classes=10)


def test_class_count_mismatch():
    with pytest.raises(ModelError, match="teacher has 10 classes but student has 5"):
        ofakd.create_distiller("ofa", teacher=tiny("resnet"), student=tiny("deit", num_classes=5))


@pytest.mark.parametrize("eps", [[0.0], [-1.0], [1.0, 0.0, 1.0, 1.0, 1.0]])
def test_non_positive_eps(eps):
    with pytest.raises(ConfigError, match="ε must be > 0"):
        ofakd.create_distiller("ofa", teacher=tiny("resnet"), student=tiny("deit"), eps=eps)


def test_wrong_number_of_eps_and_unknown_option():
    with pytest.raises(ConfigError, match="give 1, or 5"):
        ofakd.create_distiller("ofa", teacher=tiny("resnet"), student=tiny("deit"), eps=[1.0, 1.5])
    with pytest.raises(ConfigError, match="method 'ofa': unknown key 'temprature' — did you mean 'temperature'\\?"):
        ofakd.create_distiller("ofa", teacher=tiny("resnet"), student=tiny("deit"), temprature=2.0)


def test_unknown_method_lists_known():
    with pytest.raises(ConfigError, match="unknown method 'ofaa'.*ofa"):
        ofakd.create_distiller("ofaa", teacher=tiny("resnet"), student=tiny("deit"))


def test_unsupported_stage_feature_shape():
    from ofakd.distill.ofa_branches import build_branch

    with pytest.raises(ModelError, match="maps .* and tokens"):
        build_branch(torch.zeros(2, 64), 1, student_dim=64, teacher_dim=64, num_classes=10, image_hw=(32, 32))
    with pytest.raises(ModelError, match="cannot lay 7 tokens"):
        build_branch(torch.zeros(2, 7, 64), 1, student_dim=64, teacher_dim=64, num_classes=10, image_hw=(32, 32))


# ---- token branches as the reference builds them -------------------------------------
@pytest.mark.parametrize(
    ("grid", "gelus"),
    [
        (7, []),  # no merge
        (14, [True]),  # one merge: GELU after it
        (28, [True, False]),  # two merges: after the first only
        (56, [True, True, False]),  # three: after all but the last
        (112, [True, True, True, False]),
    ],
)
def test_token_branch_gelu_after_every_merge_but_the_last(grid, gelus):
    from ofakd.distill.ofa_branches import build_branch

    tokens = torch.zeros(2, 1 + grid * grid, 16)
    branch = build_branch(
        tokens, 1, student_dim=16, teacher_dim=32, num_classes=10, image_hw=(grid, grid),
        num_prefix_tokens=1, class_token=True,
    )
    assert len(branch.mergers) == len(gelus)
    assert [isinstance(a, nn.GELU) for a in branch.merge_activations] == gelus
    assert branch(torch.randn(2, 1 + grid * grid, 16)).shape == (2, 10)


def test_token_branch_blocks_use_the_reference_layer_norm_eps():
    from ofakd.distill.ofa_branches import build_branch

    branch = build_branch(torch.zeros(2, 197, 16), 2, student_dim=16, teacher_dim=32, num_classes=10,
                          image_hw=(224, 224), num_prefix_tokens=1, class_token=True)
    norms = [m for m in branch.blocks.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 2 and all(m.eps == 1e-5 for m in norms)


def test_stage4_map_branch_conv_bias_keeps_pytorch_default_init():
    from ofakd.distill.ofa_branches import build_branch

    torch.manual_seed(0)
    branch = build_branch(torch.zeros(2, 64, 7, 7), 4, student_dim=64, teacher_dim=128, num_classes=10,
                          image_hw=(224, 224))
    conv = branch[0]
    bound = 1 / 64**0.5  # PyTorch's uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert conv.bias.abs().max() <= bound and conv.bias.abs().min() > 0
