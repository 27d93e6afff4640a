"""The OFA and KD losses against values computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from ofakd.distill.kd import kd_loss
from ofakd.distill.ofa import ofa_loss


def _softmax(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_ofa(student, teacher, target, eps):
    total = 0.0
    for z_s, z_t, y in zip(student, teacher, target):
        p_s, p_t = _softmax(z_s), _softmax(z_t)
        for c in range(len(z_s)):
            weight = (1 + p_t[c]) ** eps - 1 if c == y else p_t[c] ** eps
            total -= weight * math.log(p_s[c])
    return total / len(student)


STUDENT = [[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]]
TEACHER = [[2.0, 0.0, 1.0], [-0.5, 0.5, 2.5]]
TARGET = [0, 2]


@pytest.mark.parametrize("eps", [0.5, 1.0, 1.5, 2.0])
def test_ofa_loss_matches_hand_computation(eps):
    mask = F.one_hot(torch.tensor(TARGET), 3).float()
    got = ofa_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), mask, eps=eps)
    assert got.item() == pytest.approx(_hand_ofa(STUDENT, TEACHER, TARGET, eps), rel=1e-5)


def test_ofa_at_eps_one_is_soft_cross_entropy_to_teacher():
    torch.manual_seed(0)
    z_s, z_t = torch.randn(8, 5), torch.randn(8, 5) * 3
    mask = F.one_hot(torch.randint(0, 5, (8,)), 5).float()
    soft_ce = -(F.softmax(z_t, 1) * F.log_softmax(z_s, 1)).sum(1).mean()
    assert ofa_loss(z_s, z_t, mask, eps=1.0).item() == pytest.approx(soft_ce.item(), rel=1e-5)


def test_ofa_weights_at_eps_1_5():
    """The gradient of L w.r.t. log p_s is minus the weights: target (1+p_t)^1.5 - 1, others p_t^1.5."""
    z_t = torch.tensor([[1.0, 0.0, -1.0]])
    log_p_s = torch.zeros(1, 3, requires_grad=True)
    mask = F.one_hot(torch.tensor([1]), 3).float()
    p_t = F.softmax(z_t, 1)[0]
    weight = (p_t.unsqueeze(0) + mask).pow(1.5) - mask
    (-(weight * log_p_s).sum()).backward()
    expected = [p_t[0] ** 1.5, (1 + p_t[1]) ** 1.5 - 1, p_t[2] ** 1.5]
    assert torch.allclose(-log_p_s.grad[0], torch.stack(expected))
    # and ofa_loss uses exactly these weights: compare on a fixed student
    z_s = torch.tensor([[0.3, -0.2, 0.9]])
    direct = -(torch.stack(expected) * F.log_softmax(z_s, 1)[0]).sum()
    assert ofa_loss(z_s, z_t, mask, eps=1.5).item() == pytest.approx(direct.item(), rel=1e-6)


def test_ofa_with_temperature_softens_both_sides():
    mask = F.one_hot(torch.tensor(TARGET), 3).float()
    scaled_s = [[v / 4 for v in row] for row in STUDENT]
    scaled_t = [[v / 4 for v in row] for row in TEACHER]
    got = ofa_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), mask, eps=1.5, temperature=4.0)
    assert got.item() == pytest.approx(_hand_ofa(scaled_s, scaled_t, TARGET, 1.5), rel=1e-5)


def test_ofa_is_finite_for_confident_teacher_and_student():
    z_s = torch.tensor([[200.0, -200.0, 0.0]], requires_grad=True)
    z_t = torch.tensor([[-300.0, 300.0, 0.0]])
    mask = F.one_hot(torch.tensor([1]), 3).float()
    loss = ofa_loss(z_s, z_t, mask, eps=1.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_s.grad).all()
    assert loss.item() > 100  # a confident wrong student is punished, not NaN


def test_kd_loss_matches_hand_computation():
    temperature = 2.0
    expected = 0.0
    for z_s, z_t in zip(STUDENT, TEACHER):
        p_s = _softmax([v / temperature for v in z_s])
        p_t = _softmax([v / temperature for v in z_t])
        expected += sum(t * math.log(t / s) for s, t in zip(p_s, p_t))
    expected = expected / len(STUDENT) * temperature**2
    got = kd_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), temperature)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_binary_cross_entropy_gt_loss_matches_hand_computation():
    import ofakd
    from ofakd.distill.targets import ground_truth_loss
    from tests.tiny_models import tiny

    logits = torch.tensor([[1.0, -2.0, 0.5]])
    expected = 0.0
    for c, z in enumerate(logits[0].tolist()):
        y = 1.0 if c == 2 else 0.0
        sigma = 1 / (1 + math.exp(-z))
        expected -= y * math.log(sigma) + (1 - y) * math.log(1 - sigma)
    expected /= 3
    assert ground_truth_loss(logits, torch.tensor([2]), "bce").item() == pytest.approx(expected, rel=1e-6)
    distiller = ofakd.create_distiller("vanilla", student=tiny("resnet"), gt_loss="bce", gt_weight=2.0).eval()
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([0, 3])
    with torch.no_grad():
        got = distiller(images, targets)[1]["gt"]
        assert got.item() == pytest.approx(2.0 * ground_truth_loss(distiller.student(images), targets, "bce").item(), rel=1e-5)
