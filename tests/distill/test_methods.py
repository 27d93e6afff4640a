"""The baselines and successors end to end: one optimizer step on every family pair, CRD's memory
bank, combinations (ofa+rsd), and `ofakd methods`."""

import copy
import functools
import json

import pytest
import torch

import ofakd
from ofakd.cli import main
from ofakd.distill import get_method, list_methods
from ofakd.errors import ConfigError, TeacherFeaturesError
from ofakd.models import ModelOutput
from tests.tiny_models import tiny

# (teacher family, student family): CNN->ViT, ViT->CNN, CNN->MLP, MLP->CNN
PAIRS = [("resnet", "deit"), ("deit", "resnet"), ("resnet", "mixer"), ("mixer", "resnet")]
METHODS = ["dkd", "dist", "fitnet", "rkd", "crd", "cc", "rsd", "ofa+fitnet"]
NUM_SAMPLES = 12


def _stem(model):
    """The first module of every forward (to count forwards with a hook)."""
    for name in ("patch_embed", "stem", "conv1"):
        if hasattr(model, name):
            return getattr(model, name)
    raise AssertionError(f"no stem on {type(model).__name__}")


def _count_forwards(model) -> list[int]:
    calls = [0]
    _stem(model).register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@functools.cache
def _prototype(family):
    torch.manual_seed(0)
    return tiny(family)


def _build(method, teacher_family, student_family, **options):
    teacher, student = copy.deepcopy(_prototype(teacher_family)), copy.deepcopy(_prototype(student_family))
    torch.manual_seed(0)
    distiller = ofakd.create_distiller(method, teacher, student, input_size=(3, 32, 32), num_samples=NUM_SAMPLES,
                                       **options)
    return distiller, teacher, student


def _step(distiller, indices=(0, 5, 7, 11)):
    torch.manual_seed(1)
    images, targets = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.01)
    distiller.train()
    logits, losses = distiller(images, targets, sample_indices=torch.tensor(indices))
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    return logits, losses


@pytest.mark.parametrize(("teacher_family", "student_family"), PAIRS)
@pytest.mark.parametrize("method", METHODS)
def test_one_step_every_family_pair(method, teacher_family, student_family):
    distiller, teacher, student = _build(method, teacher_family, student_family)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.named_parameters()}
    teacher_calls, student_calls = _count_forwards(teacher), _count_forwards(student)

    logits, losses = _step(distiller)

    assert logits.shape == (4, 10)
    assert "gt" in losses and all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert teacher_calls[0] == 1 and student_calls[0] == 1  # one forward each per step
    # gradients only on the student and the method's own modules
    own = {id(p) for p in distiller.parameters()}
    assert all(id(p) in own for p in list(student.parameters()) + list(distiller.branches.parameters()))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is not None for p in distiller.branches.parameters())
    assert any(not torch.equal(v, dict(student.named_parameters())[k]) for k, v in student_before.items())
    # the teacher is untouched: same weights, no gradients, eval mode, not in the distiller's state
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert not teacher.training
    assert not {id(p) for p in teacher.parameters()} & own


def test_crd_memory_bank_updates_only_the_batch_rows():
    distiller, _, _ = _build("crd", "resnet", "deit", num_negatives=100)
    assert distiller.num_negatives == NUM_SAMPLES - 1  # capped for a tiny data set
    memory = distiller.branches["memory"]
    assert memory.student_bank.shape == memory.teacher_bank.shape == (NUM_SAMPLES, 128)
    before = memory.student_bank.clone(), memory.teacher_bank.clone()
    indices = [1, 4, 9, 10]
    _step(distiller, indices)
    others = [i for i in range(NUM_SAMPLES) if i not in indices]
    for bank, old in zip((memory.student_bank, memory.teacher_bank), before):
        assert not torch.isclose(bank[indices], old[indices]).all(dim=1).any()  # every batch row moved
        assert torch.equal(bank[others], old[others])  # no other row did
        torch.testing.assert_close(bank[indices].norm(dim=1), torch.ones(4))
    assert (memory.normalizers > 0).all()
    # the bank is state: saved with the distiller, not a parameter
    assert "branches.memory.student_bank" in distiller.state_dict()
    assert not any(p is memory.student_bank for p in distiller.parameters())
    # evaluation does not touch the bank
    distiller.eval()
    frozen = memory.student_bank.clone()
    with torch.no_grad():
        distiller(torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long), sample_indices=torch.tensor([0, 2, 3, 5]))
    assert torch.equal(memory.student_bank, frozen)


def test_crd_needs_indices_and_dataset_size():
    distiller, _, _ = _build("crd", "resnet", "mixer")
    images, targets = torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ConfigError, match="sample_indices"):
        distiller(images, targets)
    with pytest.raises(ConfigError, match="out of range"):
        distiller(images, targets, sample_indices=torch.tensor([0, 1, 2, NUM_SAMPLES]))
    with pytest.raises(ConfigError, match="num_samples"):
        ofakd.create_distiller("crd", tiny("resnet"), tiny("mixer"), input_size=(3, 32, 32))


@pytest.mark.parametrize("method", ["fitnet", "rkd", "crd", "cc", "rsd", "ofa+rsd", "pat"])
def test_feature_methods_refuse_a_logits_only_cache(method):
    assert get_method(method).needs_teacher_features
    with pytest.raises(TeacherFeaturesError, match="teacher"):
        ofakd.create_distiller(method, None, tiny("mixer"), num_teacher_classes=10, input_size=(3, 32, 32),
                               num_samples=NUM_SAMPLES)
    distiller, _, _ = _build(method, "mixer", "resnet")
    with pytest.raises(TeacherFeaturesError, match="cache"):
        distiller.distill(torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long), ModelOutput(torch.randn(4, 10)),
                  sample_indices=torch.arange(4))


def test_fitnet_stage_selection_and_swin_teacher():
    distiller, _, _ = _build("fitnet", "swin", "deit", stages=[2, 4], fitnet_weight=0.5)
    _, losses = _step(distiller)
    assert set(losses) == {"gt", "fitnet_s2", "fitnet_s4"}


def test_dkd_warmup():
    distiller, _, _ = _build("dkd", "resnet", "mixer", warmup_epochs=4)
    assert distiller.warmup_factor() == 0.25  # epoch 0 until the engine says otherwise
    distiller.set_epoch(1)
    assert distiller.warmup_factor() == 0.5
    distiller.set_epoch(10)
    assert distiller.warmup_factor() == 1.0
    assert _build("dkd", "resnet", "mixer")[0].warmup_factor() == 1.0  # off by default
    with pytest.raises(ConfigError, match="warmup_epochs"):
        _build("dkd", "resnet", "mixer", warmup_epochs=-1)


@pytest.mark.parametrize("method", ["kd", "dkd", "dist", "ofa", "fitnet", "rkd", "crd", "cc", "rsd", "ofa+fitnet", "pat"])
def test_every_method_takes_a_teacher_built_at_its_own_img_size(method):
    """A ViT teacher built for 32 px beside a CNN student (whose pretrained config says 224): the teacher's
    features are read at the size it is built for, not at the student config's."""
    teacher = ofakd.create_model("deit_small_patch16_224", num_classes=10, img_size=32, patch_size=4, depth=2)
    distiller = ofakd.create_distiller(method, teacher, ofakd.create_model("resnet18", num_classes=10),
                                       num_samples=NUM_SAMPLES)
    assert distiller.input_size == (3, 32, 32)
    _, losses = _step(distiller)
    assert all(torch.isfinite(v) for v in losses.values())


# ---- combinations -------------------------------------------------------------------------------
def test_ofa_plus_rsd_sums_both_parts_with_one_forward_each():
    distiller, teacher, student = _build("ofa+rsd", "deit", "resnet", eps=[1.5], rsd={"rsd_weight": 0.5, "kd_weight": 0})
    members = distiller.members
    assert members["ofa"].options.eps == [1.5] and members["rsd"].options.rsd_weight == 0.5
    teacher_calls, student_calls = _count_forwards(teacher), _count_forwards(student)
    _, losses = _step(distiller)
    assert {"gt", "kd", "ofa_s1", "ofa_s2", "ofa_s3", "ofa_s4", "rsd"} == set(losses)  # kd: OFA's final-logit term
    assert teacher_calls[0] == 1 and student_calls[0] == 1
    keys = distiller.state_dict().keys()
    assert any(k.startswith("branches.ofa.") for k in keys) and any(k.startswith("branches.rsd.") for k in keys)
    assert all(k.startswith(("student.", "branches.")) for k in keys)


def test_a_term_two_parts_give_is_an_error_not_a_silent_drop():
    distiller, _, _ = _build("ofa+rsd", "deit", "resnet")  # both give a logit term named kd
    with pytest.raises(ConfigError, match="ofa and rsd both give a 'kd' term.*rsd.kd_weight=0"):
        _step(distiller)


def test_combined_options_and_weights():
    # dotted form, and part_weights scaling a whole part (0 switches it off)
    distiller, _, _ = _build("ofa+rsd", "deit", "mixer", **{"ofa.ofa_weight": 0.1, "rsd.kd_weight": 0},
                             part_weights=[1.0, 0.0], gt_weight=0.5)
    assert distiller.members["ofa"].options.ofa_weight == 0.1 and distiller.options.gt_weight == 0.5
    _, losses = _step(distiller)
    assert losses["rsd"].item() == 0.0 and losses["kd"].item() > 0
    with pytest.raises(ConfigError, match="ambiguous.*ofa.temperature"):
        _build("ofa+rsd", "mixer", "mixer", temperature=2.0)
    with pytest.raises(ConfigError, match="'gt_weight' belongs to the combination"):
        _build("ofa+rsd", "mixer", "mixer", **{"ofa.gt_weight": 0.5})
    with pytest.raises(ConfigError, match="method 'ofa\\+rsd': unknown key 'epss' — did you mean 'eps'\\?"):
        _build("ofa+rsd", "mixer", "mixer", epss=[1.0])
    with pytest.raises(ConfigError, match="method 'rsd': unknown key 'foo'; valid keys here: gt_weight, "):
        _build("ofa+rsd", "mixer", "mixer", rsd={"foo": 1})
    with pytest.raises(ConfigError, match="part_weights"):
        _build("ofa+rsd", "mixer", "mixer", part_weights=[1.0])
    with pytest.raises(ConfigError, match="unknown method 'rds'"):
        get_method("ofa+rds")
    with pytest.raises(ConfigError, match="twice"):
        get_method("ofa+ofa")


def test_logit_combination_works_from_a_teacher_cache():
    student = tiny("deit")
    distiller = ofakd.create_distiller("ofa+dkd", None, student, num_teacher_classes=10, input_size=(3, 32, 32),
                                       teacher_dim=64, dkd={"warmup_epochs": 2})
    assert not get_method("ofa+dkd").needs_teacher_features
    distiller.set_epoch(0)
    assert distiller.members["dkd"].warmup_factor() == 0.5
    student_calls = _count_forwards(student)
    _, losses = distiller.distill(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]), ModelOutput(torch.randn(4, 10)))
    assert {"gt", "kd", "tckd", "nckd", "ofa_s1"} <= set(losses)
    assert student_calls[0] == 1  # both parts read the one student forward


# ---- ofakd methods --------------------------------------------------------------------------------
def test_methods_command_lists_every_method_and_option(capsys):
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    for name in list_methods():
        assert f"\n{name}\n" in f"\n{text}"
        for option in get_method(name).Options.model_fields:
            assert f"      {option}: " in text
    assert "cannot use a logits-only teacher cache" in text and "ofa+dist" in text
    assert main(["methods", "crd", "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["needs_teacher_features"] and info["needs_sample_indices"]
    assert {o["name"]: o["default"] for o in info["options"]}["num_negatives"] == 16384
    assert main(["methods", "nope"]) == 2


# ---- CRD under DDP: every process applies the global batch's update -------------------------------
def _ddp_memory_worker(rank, world, init_file):
    import torch.distributed as dist

    from ofakd.distill.collectives import gather_rows, mean_over_processes
    from ofakd.distill.crd import ContrastMemory

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        gathered = gather_rows(torch.full((rank + 1, 2), float(rank)))  # uneven batches
        assert gathered.tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
        assert mean_over_processes(torch.tensor([2.0 * rank])).item() == 1.0
        torch.manual_seed(0)
        memory = ContrastMemory(6, 4)
        before = memory.student_bank.clone()
        indices = torch.tensor([0]) if rank == 0 else torch.tensor([3, 4])
        memory.update(indices, torch.randn(len(indices), 4), torch.randn(len(indices), 4), 0.5)
        changed = (~torch.isclose(memory.student_bank, before).all(dim=1)).nonzero().flatten().tolist()
        assert changed == [0, 3, 4], changed
        banks = gather_rows(memory.student_bank.unsqueeze(0))
        assert torch.equal(banks[0], banks[1])  # identical on every process
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_crd_memory_under_ddp(tmp_path):
    """Two gloo processes (about 20 s, most of it two imports of torch)."""
    torch.multiprocessing.spawn(_ddp_memory_worker, args=(2, str(tmp_path / "init")), nprocs=2)
