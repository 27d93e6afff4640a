"""PAT (``--method pat``): its pure pieces against hand-computed values, the modules it adds (parameter counts by
hand), the prompted teacher (frozen weights, trained prompts, no hook left behind), the feedback as run state
(resume, per process), and its refusals. Golden loss values: tests/golden_cases.py (``pat_*``)."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn

import ofakd
from ofakd.config import load_config
from ofakd.distill import get_method
from ofakd.distill.pat import hcl_loss
from ofakd.distill.pat_attention import batch_position_encoding
from ofakd.distill.pat_layout import Layout
from ofakd.distill.pat_prompts import PromptBlock, SqueezeExcitationGate, StageInput
from ofakd.engine import fit
from ofakd.errors import ConfigError, ModelError, TeacherFeaturesError
from ofakd.models.stages import default_stage_indices, stage_input_modules
from tests.conftest import tiny_overrides
from tests.golden_cases import cnn, vit

SIZE = 32


def _checkerboard(size: int) -> torch.Tensor:
    """(1, 1, size, size) of ±1 alternating: every 2×2 (and coarser) average is 0."""
    index = torch.arange(size)
    return ((index[:, None] + index[None, :]) % 2 * 2 - 1).float().view(1, 1, size, size)


# ---- pure pieces --------------------------------------------------------------------------------------
def test_hcl_loss_weights_the_pooled_levels_below_the_grid():
    # 4x4: level 4 is not below the grid, so levels 2 and 1 are kept, weighted 1/2 and 1/4; a checkerboard
    # has MSE 1 against zeros at full resolution and 0 once pooled
    board = _checkerboard(4)
    assert hcl_loss(board, torch.zeros_like(board)).item() == pytest.approx(1 / (1 + 1 / 2 + 1 / 4))
    # 8x8: all three levels kept (1/2, 1/4, 1/8)
    board = _checkerboard(8)
    assert hcl_loss(board, torch.zeros_like(board)).item() == pytest.approx(1 / (1 + 1 / 2 + 1 / 4 + 1 / 8))
    # a constant offset c has MSE c² at every level: the weighted mean is c²
    x = torch.randn(2, 3, 8, 8)
    assert hcl_loss(x + 0.5, x).item() == pytest.approx(0.25)
    # 1x1: the plain MSE
    assert hcl_loss(torch.full((1, 2, 1, 1), 3.0), torch.ones(1, 2, 1, 1)).item() == pytest.approx(4.0)


def test_batch_position_encoding_codes_the_sample_index():
    codes = batch_position_encoding(2, 4)
    assert codes.shape == (2, 1, 4)
    torch.testing.assert_close(codes[0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    # ω = 10000^(-2i/4): 1 and 0.01
    torch.testing.assert_close(codes[1, 0], torch.tensor([math.sin(1.0), math.cos(1.0), math.sin(0.01), math.cos(0.01)]))


def test_squeeze_excitation_gate_returns_the_gates_alone():
    gate = SqueezeExcitationGate(32)  # hidden 32 // 16 = 2
    assert gate.compress.out_channels == 2 and SqueezeExcitationGate(8).compress.out_channels == 1
    with torch.no_grad():
        for conv in (gate.compress, gate.excitation):
            conv.weight.fill_(0.01)
            conv.bias.zero_()
    x = torch.ones(3, 32, 5, 5)
    # pooled 1 per channel -> each hidden unit 32 · 0.01 = 0.32 -> each gate σ(2 · 0.32 · 0.01)
    torch.testing.assert_close(gate(x), torch.full((3, 32, 1, 1), 1 / (1 + math.exp(-0.0064))))


@pytest.mark.parametrize("kind", ["tokens", "nchw", "nhwc"])
def test_a_prompt_starts_as_the_identity_then_adds_one_channel_vector_per_sample(kind):
    torch.manual_seed(0)
    if kind == "tokens":  # a class token, then 4x4 patch tokens of width 16
        stage_input, x = StageInput(Layout(True, 16, (4, 4), prefix=1)), torch.randn(2, 17, 16)
    elif kind == "nchw":
        stage_input, x = StageInput(Layout(False, 16, (4, 4))), torch.randn(2, 16, 4, 4)
    else:
        stage_input, x = StageInput(Layout(False, 16, (4, 4)), channels_last=True), torch.randn(2, 4, 4, 16)
    prompt = PromptBlock(stage_input, Layout(False, 32, (2, 2)))  # feedback of another shape: aligned first
    gap = torch.randn(2, 32, 2, 2)
    assert torch.equal(prompt(x, gap, True), x)  # β = 0: the teacher starts unchanged
    with torch.no_grad():
        prompt.beta.fill_(0.5)
        prompt.prompt[3].compress.bias.fill_(2.0)  # its one hidden SE unit alive: the prompt depends on its input
    out = prompt(x, gap, True)
    if kind == "tokens":
        assert torch.equal(out[:, 0], x[:, 0])  # the class token is set aside
        delta = (out - x)[:, 1:].transpose(1, 2)  # (B, C, 16)
    elif kind == "nchw":
        delta = (out - x).flatten(2)
    else:
        delta = (out - x).flatten(1, 2).transpose(1, 2)
    # the SE gates end both branches on 1x1 maps: one vector per sample, the same at every position, so the
    # layout is kept (a token's channels stay its own)
    assert delta.abs().max() > 0
    torch.testing.assert_close(delta, delta[:, :, :1].expand_as(delta))
    assert not torch.allclose(prompt(x, gap, False), out)  # without feedback the prompt reads x itself


def test_stage_inputs_are_the_modules_that_start_each_stage():
    vit12 = timm.create_model("deit_tiny_patch16_224", img_size=32, patch_size=8, depth=12)
    assert [n for n, _ in stage_input_modules(vit12, default_stage_indices(vit12))] == [
        "blocks.0", "blocks.2", "blocks.4", "blocks.10"]
    vit6 = vit(SIZE, depth=6)  # stages at blocks 0, 2, 3, 5
    assert [n for n, _ in stage_input_modules(vit6, default_stage_indices(vit6))] == [
        "blocks.0", "blocks.1", "blocks.3", "blocks.4"]
    resnet = cnn(SIZE)  # feature_info: act1 (the stem), layer1-4; their channels 64, 8, 16, 32, 64
    assert stage_input_modules(resnet, default_stage_indices(resnet)) == [
        ("layer1", 64), ("layer2", 8), ("layer3", 16), ("layer4", 32)]
    names = ["layer1", "layer2", "layer3", "layer4"]
    assert stage_input_modules(resnet, [0, 1, 2, 3], names) == [(n, None) for n in names]
    vit2 = vit(SIZE, depth=2)  # stages at blocks 0, 0, 1, 1: a repeated stage starts where the one before does
    assert [n for n, _ in stage_input_modules(vit2, default_stage_indices(vit2))] == [
        "blocks.0", "blocks.0", "blocks.1", "blocks.1"]
    with pytest.raises(ModelError, match="no module starts stage 4: pass other teacher_feature_indices"):
        stage_input_modules(resnet, [1, 2, 4, 5])


# ---- the modules PAT adds: parameter counts by hand ------------------------------------------------------
def _conv(c_in, c_out, k=1, groups=1, bias=True):
    return c_in // groups * c_out * k * k + (c_out if bias else 0)


def _se(c):
    hidden = max(c // 16, 1)
    return _conv(c, hidden) + _conv(hidden, c)


def _prompt_block(c):
    """Fusion (1x1 2C->C, 5x5, 1x1, SE, 1x1) + β + Prompt (1x1 groups 4, depthwise 5x5, 1x1, SE, 1x1 groups 4)."""
    fusion = _conv(2 * c, c) + _conv(c, c, 5) + _conv(c, c) + _se(c) + _conv(c, c)
    prompt = _conv(c, c, groups=4) + _conv(c, c, 5, groups=c) + _conv(c, c) + _se(c) + _conv(c, c, groups=4)
    return fusion + 1 + prompt


def _map_to_map(c_in, c_out):
    return 2 * c_in + _conv(c_in, c_out, bias=False)  # BatchNorm2d(C_in), 1x1 conv without bias


ATTENTION_512 = 2 * 512 + (512 * 512 + 512) + (512 * 1024 + 1024)  # LayerNorm, to_q, to_kv


def _counts(distiller) -> dict[str, list[int] | int]:
    branches = distiller.branches
    return {
        "prompts": [sum(p.numel() for p in prompt.parameters()) for prompt in branches["prompts"]],
        "aligners": [sum(p.numel() for p in aligner.parameters()) for aligner in branches["aligners"]],
        "embeddings": [sum(p.numel() for p in e.parameters()) for e in branches["attention"].embeddings],
        "attention": sum(p.numel() for p in branches["attention"].parameters()),
        "feedback": sum(p.numel() for p in branches["feedback"].parameters()),
    }


def test_added_modules_of_a_cnn_to_vit_pair():
    """ResNet (1/8 width: stage outputs 8@8x8, 16@4x4, 32@2x2, 64@1x1) -> ViT (4x4 patches: 8x8 tokens of 32)."""
    distiller = ofakd.create_distiller("pat", cnn(SIZE), vit(SIZE), input_size=(3, SIZE, SIZE))
    # stage k's input is stage k-1's output (stage 1's: the 64-channel stem, max-pooled to 8x8); the feedback
    # (stage k's output) is aligned to it by BatchNorm + 1x1 conv
    expected_prompts = [_prompt_block(64) + _map_to_map(8, 64), _prompt_block(8) + _map_to_map(16, 8),
                        _prompt_block(16) + _map_to_map(32, 16), _prompt_block(32) + _map_to_map(64, 32)]
    # 16 regions per stage of the 8x8 token grid: 2x2 patches of 32 channels onto 512
    embeddings = [_conv(32, 512, 2)] * 4
    # each stage's 16 region tokens of 512 laid on 4x4, resized to the teacher's grid: BatchNorm + 1x1 conv
    aligners = [_map_to_map(512, c) for c in (8, 16, 32, 64)]
    assert _counts(distiller) == {"prompts": expected_prompts, "aligners": aligners, "embeddings": embeddings,
                                  "attention": sum(embeddings) + ATTENTION_512, "feedback": 0}
    added = sum(expected_prompts) + sum(aligners) + sum(embeddings) + ATTENTION_512
    assert sum(p.numel() for p in distiller.branches.parameters()) == added == 1_293_676


def test_added_modules_of_a_vit_to_cnn_pair():
    """ViT (stages at its 4 blocks: 8x8 tokens of 32 and a class token) -> ResNet (1/8 width)."""
    distiller = ofakd.create_distiller("pat", vit(SIZE), cnn(SIZE), input_size=(3, SIZE, SIZE))
    # every stage's input and output: 64 tokens of 32, no feedback aligner
    expected_prompts = [_prompt_block(32)] * 4
    # 4x4 regions of 8@8x8 (2x2 patches), 16@4x4, 32@2x2 and 64@1x1 (1x1 patches, the map enlarged to 4x4)
    embeddings = [_conv(8, 512, 2), _conv(16, 512), _conv(32, 512), _conv(64, 512)]
    # 16 tokens of 512 -> 64 tokens of 32: BatchNorm1d(16), Linear(512, 32), BatchNorm1d(32), Linear(16, 64)
    aligner = 2 * 16 + (512 * 32 + 32) + 2 * 32 + (16 * 64 + 64)
    assert _counts(distiller) == {"prompts": expected_prompts, "aligners": [aligner] * 4, "embeddings": embeddings,
                                  "attention": sum(embeddings) + ATTENTION_512, "feedback": 0}
    assert sum(p.numel() for p in distiller.branches.parameters()) == 4 * _prompt_block(32) + 4 * aligner + sum(
        embeddings) + ATTENTION_512 == 1_065_620


# ---- the prompted teacher ----------------------------------------------------------------------------------
def _step(distiller, optimizer, seed):
    torch.manual_seed(seed)
    images, targets = torch.randn(4, 3, SIZE, SIZE), torch.randint(0, 10, (4,))
    _, losses = distiller(images, targets)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    distiller.on_step_end()
    return losses


@pytest.mark.parametrize(("teacher", "student"), [("cnn", "vit"), ("vit", "cnn")])
def test_the_teacher_stays_frozen_and_its_prompts_train(teacher, student):
    torch.manual_seed(0)
    teacher_model, student_model = (cnn if teacher == "cnn" else vit)(SIZE), (vit if student == "vit" else cnn)(SIZE)
    distiller = ofakd.create_distiller("pat", teacher_model, student_model, input_size=(3, SIZE, SIZE),
                                       query_dim=64).train()
    frozen = {k: v.clone() for k, v in teacher_model.state_dict().items()}
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.05)
    first = _step(distiller, optimizer, 1)
    assert first["pat_reg"].item() == 0.0  # β = 0: the prompted teacher is the teacher
    assert all(p.grad is not None for p in distiller.branches.parameters())  # the fusion trains from step 1 (DDP)
    assert all(prompt.beta.item() != 0.0 for prompt in distiller.branches["prompts"])
    second = _step(distiller, optimizer, 2)
    assert second["pat_reg"].item() > 0.0  # now the prompts change the teacher's predictions
    assert all(p.grad is None and not p.requires_grad for p in teacher_model.parameters())
    assert all(torch.equal(v, teacher_model.state_dict()[k]) for k, v in frozen.items())
    assert not teacher_model.training
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in teacher_model.modules())  # nothing left behind
    assert not {id(p) for p in teacher_model.parameters()} & {id(p) for p in distiller.parameters()}


# ---- the feedback: state of the run, per process ---------------------------------------------------------
def test_the_feedback_is_saved_resumed_and_never_a_buffer():
    def build():
        torch.manual_seed(0)
        return ofakd.create_distiller("pat", cnn(SIZE), vit(SIZE), input_size=(3, SIZE, SIZE), query_dim=64).train()

    distiller = build()
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.05)
    key = "branches.feedback._extra_state"
    width = 1 + 8 * 64 + 16 * 16 + 32 * 4 + 64  # the process's rank, then the four stages' gaps (8@8x8, ...)
    assert distiller.state_dict()[key].shape == (0, width)  # none before the first step
    _step(distiller, optimizer, 1)
    state = {k: v.clone() for k, v in distiller.state_dict().items()}
    assert state[key].shape == (4, width) and not state[key][:, 0].any() and state[key].abs().sum() > 0
    # not a buffer: DDP and the engine's evaluation broadcast buffers from process 0, the feedback stays each one's
    feedback_buffers = [(name, b.numel()) for name, b in distiller.named_buffers() if name.startswith("branches.feedback")]
    assert feedback_buffers == [("branches.feedback.anchor", 0)]  # (an empty one that follows .to(device))
    # a fresh distiller given the state computes the next step exactly as the first one does
    resumed = build()
    resumed.load_state_dict(state)
    torch.manual_seed(3)
    images, targets = torch.randn(4, 3, SIZE, SIZE), torch.randint(0, 10, (4,))
    expected = {k: v.item() for k, v in distiller(images, targets)[1].items()}
    assert {k: v.item() for k, v in resumed(images, targets)[1].items()} == expected
    # without the feedback the same step differs: the feedback is what was resumed
    fresh = build()
    fresh.load_state_dict({**state, key: torch.zeros(0, width)})
    assert fresh(images, targets)[1]["pat_mse"].item() != expected["pat_mse"]


def test_a_step_not_taken_leaves_the_feedback_and_another_batch_size_gets_none():
    torch.manual_seed(0)
    distiller = ofakd.create_distiller("pat", vit(SIZE), cnn(SIZE), input_size=(3, SIZE, SIZE), query_dim=64)
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.05)
    _step(distiller, optimizer, 1)
    memory = distiller.branches["feedback"]
    kept = [gap.clone() for gap in memory.gaps]
    distiller(torch.randn(4, 3, SIZE, SIZE), torch.zeros(4, dtype=torch.long))  # no on_step_end: a skipped step
    assert all(torch.equal(a, b) for a, b in zip(memory.gaps, kept))
    gaps, fed_back = memory.read(4)
    assert fed_back and all(torch.equal(a, b) for a, b in zip(gaps, kept))
    gaps, fed_back = memory.read(3)
    assert not fed_back and all(g.shape[0] == 3 and not g.any() for g in gaps)


# ---- refusals ------------------------------------------------------------------------------------------------
def test_pat_runs_alone_and_validates_its_region_grid():
    with pytest.raises(ConfigError, match="method 'pat' cannot be part of a combination .*use --method pat alone"):
        get_method("pat+dist")
    with pytest.raises(ConfigError, match="num_queries must be 4·n²"):
        get_method("pat").parse_options({"num_queries": 32})
    with pytest.raises(ConfigError, match="query_dim must be a multiple of the 8 attention heads"):
        get_method("pat").parse_options({"query_dim": 100})


def test_pat_keeps_its_live_teacher():
    distiller = ofakd.create_distiller("pat", vit(SIZE), cnn(SIZE), input_size=(3, SIZE, SIZE), query_dim=64)
    with pytest.raises(TeacherFeaturesError, match="method 'pat' needs teacher features.*run it with a live teacher"):
        distiller.replace_teacher(None)


# ---- a run through the engine: exact resume, the plain student exported ------------------------------------
@pytest.fixture(scope="module")
def pat_runs(tmp_path_factory):
    """A PAT run uninterrupted, and stopped after epoch 1 then resumed (the feedback of epoch 1's last step
    feeds epoch 2's first)."""
    out = tmp_path_factory.mktemp("pat-runs")
    options = [("method", {"name": "pat", "query_dim": 64, "num_queries": 16})]
    quiet = {"progress": False, "log": lambda _msg: None}
    full = fit(load_config("demo", tiny_overrides(out, "full") + options), **quiet)
    fit(load_config("demo", tiny_overrides(out, "part") + options), stop_after_epochs=1, **quiet)
    resumed = fit(load_config(str(out / "part" / "config.yaml")), resume=out / "part", **quiet)
    return out, full, resumed


def test_a_resumed_pat_run_continues_exactly(pat_runs):
    out, full, resumed = pat_runs
    a = torch.load(out / "full" / "last.pt", weights_only=True)
    b = torch.load(out / "part" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 8 and resumed["complete"]
    assert a["distiller"]["branches.feedback._extra_state"].shape[0] == 16  # the last batch's feedback
    assert a["distiller"].keys() == b["distiller"].keys()
    for key in a["distiller"]:
        assert torch.equal(a["distiller"][key], b["distiller"][key]), key
    assert (resumed["best_top1"], resumed["final_top1"]) == (full["best_top1"], full["final_top1"])


def test_a_pat_run_exports_the_plain_student(pat_runs, tmp_path, ofakd_cli):
    out, _, _ = pat_runs
    best = load_file(str(out / "full" / "best.safetensors"))
    student = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=16, patch_size=4, depth=2,
                                embed_dim=32, num_heads=2)
    assert best.keys() == student.state_dict().keys()  # no prompt, attention or aligner
    code, _, stderr = ofakd_cli("export", out / "full", "--format", "timm", "--out", tmp_path / "timm")
    assert code == 0, stderr
    exported = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True)
    assert isinstance(exported, nn.Module) and exported.state_dict().keys() == student.state_dict().keys()


# ---- under DDP: one static graph, shared prompts, each process its own feedback, saved and resumed ------------
def _ddp_worker(rank, world, init_file):
    import torch.distributed as dist

    from ofakd.engine.ddp import training_module
    from ofakd.engine.processes import DistContext

    def build():
        torch.manual_seed(0)
        return ofakd.create_distiller("pat", cnn(SIZE), vit(SIZE), input_size=(3, SIZE, SIZE), query_dim=64).train()

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        distiller = build()
        context = DistContext(rank=rank, world_size=world, backend="gloo")
        module = training_module(distiller, dist=context, device=torch.device("cpu"))  # as the engine does
        optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.05)
        for step in range(3):  # step 0 has no feedback: the same parameters train all the same (static graph)
            torch.manual_seed(100 * step + rank)  # each process its own batch
            _, losses = module(torch.randn(4, 3, SIZE, SIZE), torch.randint(0, 10, (4,)))
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            distiller.on_step_end()
        context.broadcast_buffers(distiller)  # what the engine does before evaluating
        prompts = torch.cat([p.detach().flatten() for p in distiller.branches["prompts"].parameters()])
        everyone = [torch.zeros_like(prompts) for _ in range(world)]
        dist.all_gather(everyone, prompts)
        assert torch.equal(everyone[0], everyone[1])  # the prompts are trained together
        own = [gap.clone() for gap in distiller.branches["feedback"].gaps]
        # a checkpoint: every process gathers, the main process saves, every process resumes from that file
        distiller.before_checkpoint()
        saved = [distiller.state_dict() if rank == 0 else None]
        dist.broadcast_object_list(saved, src=0)
        assert saved[0]["branches.feedback._extra_state"][:, 0].tolist() == [0.0] * 4 + [1.0] * 4
        resumed = build()
        resumed.load_state_dict(saved[0])
        assert all(torch.equal(a, b) for a, b in zip(resumed.branches["feedback"].gaps, own))  # its own, exactly
        others = [torch.zeros_like(own[0]) for _ in range(world)]
        dist.all_gather(others, own[0])
        assert not torch.equal(others[0], others[1])  # and the processes' feedback differs
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_pat_under_ddp(tmp_path):
    """Two gloo processes (about 20 s, most of it two imports of torch)."""
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "init")), nprocs=2)
