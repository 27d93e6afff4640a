"""OFA-KD, KD and vanilla end to end: one optimizer step for students of every family."""

import pytest
import torch

import ofakd
from ofakd.models import ModelOutput
from tests.tiny_models import tiny

# (student family, teacher family, input size): every student family, teachers of other families
PAIRS = [
    ("resnet", "deit", 32),
    ("mobilenetv2", "swin", 32),
    ("mobilenetv3", "mixer", 32),
    ("convnext", "deit", 32),
    ("efficientnet", "resmlp", 32),
    ("deit", "resnet", 32),
    ("deit_distilled", "mobilenetv3", 28),
    ("vit_registers", "resnet", 28),
    ("swin", "resnet", 32),
    ("mixer", "efficientnet", 28),
    ("resmlp", "mobilenetv2", 32),
]


def _one_step(distiller, size, targets=None):
    torch.manual_seed(0)
    images = torch.randn(4, 3, size, size)
    targets = torch.randint(0, 10, (4,)) if targets is None else targets
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.01)
    teacher_before = {k: v.clone() for k, v in distiller.teacher.model.state_dict().items()}
    student_before = {k: v.clone() for k, v in distiller.student.named_parameters()}
    distiller.train()
    logits, losses = distiller(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return logits, losses, teacher_before, student_before


@pytest.mark.parametrize(("student_family", "teacher_family", "size"), PAIRS)
def test_ofa_step_every_family(student_family, teacher_family, size):
    teacher, student = tiny(teacher_family, size=size), tiny(student_family, size=size)
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, input_size=(3, size, size),
                                       mean=(0.5,), std=(0.5,), eps=[1.5])  # the random batch's (any) normalisation
    logits, losses, teacher_before, student_before = _one_step(distiller, size)
    assert logits.shape == (4, 10)
    assert set(losses) == {"gt", "kd", "ofa_s1", "ofa_s2", "ofa_s3", "ofa_s4"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    # gradients reach the student and every branch; the teacher is untouched and not trainable
    assert all(p.grad is not None for p in distiller.branches.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())
    assert any(not torch.equal(v, dict(student.named_parameters())[k]) for k, v in student_before.items())
    assert not teacher.training
    # the teacher is never part of the distiller's parameters or state
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in distiller.parameters()}
    assert not any(k.startswith("teacher") for k in distiller.state_dict())


def test_ofa_accepts_soft_targets_and_per_stage_eps():
    teacher, student = tiny("resnet"), tiny("deit")
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, eps=[1.0, 1.1, 1.2, 1.3, 1.5],
                                       ofa_weight=0.1)
    soft = torch.softmax(torch.randn(4, 10), dim=1)
    _, losses, _, _ = _one_step(distiller, 32, targets=soft)
    assert all(torch.isfinite(v) for v in losses.values())
    assert distiller.eps == [1.0, 1.1, 1.2, 1.3, 1.5]


def test_ofa_terms_equal_the_loss_on_branch_logits():
    """Each stage term is the OFA loss of that branch's logits against the teacher's logits."""
    from ofakd.distill.ofa import ofa_loss
    from ofakd.distill.targets import one_hot_targets, soft_cross_entropy

    teacher, student = tiny("convnext"), tiny("deit")
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, stages=[2, 4], eps=[1.2, 1.4, 1.6],
                                       ofa_weight=0.5, kd_weight=2.0, gt_weight=0.3).eval()
    images, targets = torch.randn(3, 3, 32, 32), torch.tensor([1, 2, 3])
    with torch.no_grad():
        logits, losses = distiller(images, targets)
        z_t = teacher(images)
        out = distiller.student_tap(images)
        logits_ref, features = out.logits, out.select(distiller.student_tap.positions)
        mask = one_hot_targets(targets, 10)
        assert torch.allclose(logits, student(images), atol=1e-5)
        assert losses["gt"].item() == pytest.approx(0.3 * soft_cross_entropy(logits_ref, targets).item(), rel=1e-5)
        s2 = ofa_loss(distiller.branches["stage2"](features[0]), z_t, mask, 1.2)
        s4 = ofa_loss(distiller.branches["stage4"](features[1]), z_t, mask, 1.4)
        kd = ofa_loss(logits_ref, z_t, mask, 1.6)
    assert set(losses) == {"gt", "ofa_s2", "ofa_s4", "kd"}
    assert losses["ofa_s2"].item() == pytest.approx(0.5 * s2.item(), rel=1e-5)
    assert losses["ofa_s4"].item() == pytest.approx(0.5 * s4.item(), rel=1e-5)
    assert losses["kd"].item() == pytest.approx(2.0 * kd.item(), rel=1e-5)


def test_cached_teacher_logits_replace_the_teacher():
    teacher, student = tiny("resnet"), tiny("mixer")
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student).eval()
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    with torch.no_grad():
        live = distiller(images, targets)[1]
        cached = distiller.distill(images, targets, ModelOutput(teacher(images)))[1]
    for name in live:
        assert cached[name].item() == pytest.approx(live[name].item(), rel=1e-6)


def test_distiller_without_teacher_uses_teacher_dim_for_cache():
    student = tiny("resnet")
    distiller = ofakd.create_distiller("ofa", teacher=None, student=student, num_teacher_classes=10, teacher_dim=768)
    widths = [m.out_features for m in distiller.branches.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [10, 10, 10, 10]
    assert distiller.branches["stage4"][0].out_channels == 768  # max(D_s=512, D_t=768)
    _, losses = distiller.distill(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), ModelOutput(torch.randn(2, 10)))
    assert set(losses) >= {"gt", "kd"}


@pytest.mark.parametrize("method", ["kd", "vanilla"])
def test_kd_and_vanilla_step(method):
    teacher, student = tiny("deit"), tiny("resnet")
    distiller = ofakd.create_distiller(method, teacher=teacher, student=student, **({"temperature": 4.0} if method == "kd" else {}))
    _, losses, teacher_before, _ = _one_step(distiller, 32)
    assert set(losses) == ({"gt", "kd"} if method == "kd" else {"gt"})
    assert all(torch.isfinite(v) for v in losses.values())
    assert sum(1 for _ in distiller.branches.parameters()) == 0
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_before.items())


def test_vanilla_needs_no_teacher():
    distiller = ofakd.create_distiller("vanilla", student=tiny("resnet"))
    _, losses = distiller(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    assert set(losses) == {"gt"}


def test_teacher_moves_with_distiller_and_stays_in_eval():
    teacher, student = tiny("resnet"), tiny("deit")
    distiller = ofakd.create_distiller("kd", teacher=teacher, student=student)
    distiller.to(torch.float64).train()
    assert next(teacher.parameters()).dtype == torch.float64
    assert not teacher.training and student.training


def test_list_methods_includes_core():
    assert {"kd", "ofa", "vanilla"} <= set(ofakd.list_methods())


def test_ofa_logit_standardization_is_invariant_to_teacher_scale():
    teacher, student = tiny("resnet"), tiny("deit")
    distiller = ofakd.create_distiller("ofa", teacher=teacher, student=student, logit_standardization=True).eval()
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    z_t = torch.randn(2, 10)
    with torch.no_grad():
        a = distiller.distill(images, targets, ModelOutput(z_t))[1]
        b = distiller.distill(images, targets, ModelOutput(3.0 * z_t + 5.0))[1]
    for name in a:
        assert a[name].item() == pytest.approx(b[name].item(), rel=1e-5)
