"""Every baseline loss against a value computed independently (numpy, explicit loops)."""

import math

import numpy as np
import pytest
import torch

import ofakd
from ofakd.distill.cc import cc_loss
from ofakd.distill.crd import contrast_scores, momentum_update, nce_loss, sample_negatives
from ofakd.distill.dist import dist_loss, dist_terms
from ofakd.distill.dkd import dkd_loss, dkd_terms
from ofakd.distill.fitnet import fitnet_loss
from ofakd.distill.projectors import FeatureProjector
from ofakd.distill.rkd import rkd_angle_loss, rkd_distance_loss
from ofakd.distill.rsd import rsd_loss
from ofakd.models import ModelOutput
from tests.tiny_models import tiny


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def _smooth_l1(x):
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 7, generator=g) * 2, torch.randn(5, 7, generator=g) * 2, torch.tensor([0, 3, 6, 2, 2])


# ---- DKD -----------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_by_hand(logits, temperature):
    zs, zt, y = logits
    tckd = nckd = 0.0
    for b in range(5):
        ps, pt = _softmax(zs[b].double().numpy() / temperature), _softmax(zt[b].double().numpy() / temperature)
        t = int(y[b])
        tckd += _kl([pt[t], 1 - pt[t]], [ps[t], 1 - ps[t]])
        others = [c for c in range(7) if c != t]
        nckd += _kl([pt[c] / (1 - pt[t]) for c in others], [ps[c] / (1 - ps[t]) for c in others])
    tckd, nckd = tckd / 5 * temperature**2, nckd / 5 * temperature**2
    got_t, got_n = dkd_terms(zs, zt, y, temperature)
    assert got_t.item() == pytest.approx(tckd, rel=1e-4, abs=1e-6)
    assert got_n.item() == pytest.approx(nckd, rel=1e-4, abs=1e-6)
    assert dkd_loss(zs, zt, y, 1.0, 2.0, temperature).item() == pytest.approx(tckd + 2 * nckd, rel=1e-4)
    # soft targets (mixup / smoothing) use their argmax as the target class
    soft = torch.nn.functional.one_hot(y, 7).float() * 0.8 + 0.2 / 7
    assert dkd_terms(zs, zt, soft, temperature)[1].item() == pytest.approx(nckd, rel=1e-4, abs=1e-6)


def test_dkd_finite_for_extreme_logits():
    zs = torch.tensor([[80.0, -80.0, 0.0]], requires_grad=True)
    zt = torch.tensor([[-90.0, 90.0, 0.0]])
    loss = dkd_loss(zs, zt, torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zs.grad).all()


# ---- DIST ----------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_dist_by_hand(logits, tau):
    zs, zt, _ = logits
    ys = np.stack([_softmax(r / tau) for r in zs.double().numpy()])
    yt = np.stack([_softmax(r / tau) for r in zt.double().numpy()])
    inter = 1 - np.mean([np.corrcoef(ys[i], yt[i])[0, 1] for i in range(5)])
    intra = 1 - np.mean([np.corrcoef(ys[:, c], yt[:, c])[0, 1] for c in range(7)])
    got_inter, got_intra = dist_terms(zs, zt, tau)
    assert got_inter.item() == pytest.approx(inter * tau**2, rel=1e-4)
    assert got_intra.item() == pytest.approx(intra * tau**2, rel=1e-4)
    assert dist_loss(zs, zt, 1.0, 2.0, tau).item() == pytest.approx((inter + 2 * intra) * tau**2, rel=1e-4)
    assert dist_loss(zt, zt).item() == pytest.approx(0.0, abs=1e-5)


# ---- FitNet projector and loss ---------------------------------------------------------------
def test_fitnet_projector_tokens_to_map_by_hand():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(2, 1 + 16, 3, generator=g)  # class token + a 4x4 grid of 3-wide tokens
    teacher_map = torch.randn(2, 2, 2, 2, generator=g)  # (B, C_t=2, 2, 2)
    proj = FeatureProjector(tokens, teacher_map, student_prefix_tokens=1, student_hw=(32, 32), teacher_hw=(32, 32))
    weight = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    with torch.no_grad():
        proj.proj.weight.copy_(weight.view(2, 3, 1, 1))
        proj.proj.bias.copy_(torch.tensor([0.1, -0.2]))
    out = proj(tokens)
    t, w = tokens.double().numpy(), weight.double().numpy()
    expected = np.zeros((2, 2, 2, 2))
    for b in range(2):
        for i in range(2):
            for j in range(2):  # average of the 2x2 block of the 4x4 grid, then the 1x1 conv
                cells = [t[b, 1 + (2 * i + di) * 4 + (2 * j + dj)] for di in range(2) for dj in range(2)]
                mean = np.mean(cells, axis=0)
                expected[b, :, i, j] = w @ mean + np.array([0.1, -0.2])
    np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(proj.target(teacher_map), teacher_map)
    mse = np.mean((expected - teacher_map.double().numpy()) ** 2)
    assert fitnet_loss(out, teacher_map).item() == pytest.approx(mse, rel=1e-5)


def test_fitnet_projector_map_to_tokens_grows_the_grid():
    student_map = torch.arange(6.0).view(1, 2, 1, 3).repeat(1, 1, 2, 1)[:, :, :1, :1]  # (1, 2, 1, 1)
    teacher_tokens = torch.randn(1, 2 + 9, 4)  # 2 prefix tokens + a 3x3 grid, width 4
    proj = FeatureProjector(student_map, teacher_tokens, teacher_prefix_tokens=2, student_hw=(24, 24),
                            teacher_hw=(24, 24))
    out = proj(student_map)
    assert out.shape == (1, 4, 3, 3)
    # a 1x1 map grows to a constant grid: every cell is the 1x1 conv of the single value
    cell = proj.proj.weight.view(4, 2) @ student_map.view(2) + proj.proj.bias
    torch.testing.assert_close(out, cell.view(1, 4, 1, 1).expand(1, 4, 3, 3))
    target = proj.target(teacher_tokens)
    assert torch.equal(target[0, :, 1, 2], teacher_tokens[0, 2 + 1 * 3 + 2])  # prefix tokens set aside


# ---- RKD -----------------------------------------------------------------------------------
def _rkd_by_hand(s, t):
    n = len(s)

    def dist(e):
        d = np.array([[np.linalg.norm(e[i] - e[j]) for j in range(n)] for i in range(n)])
        return d / d[~np.eye(n, dtype=bool)].mean()

    ds, dt = dist(s), dist(t)
    loss_d = np.mean([_smooth_l1(ds[i, j] - dt[i, j]) for i in range(n) for j in range(n)])

    def unit(v):
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else v * 0

    def cos(e, i, j, k):  # angle at vertex j between e_i and e_k
        return float(unit(e[i] - e[j]) @ unit(e[k] - e[j]))

    loss_a = np.mean([_smooth_l1(cos(s, i, j, k) - cos(t, i, j, k))
                      for j in range(n) for i in range(n) for k in range(n)])
    return loss_d, loss_a


def test_rkd_by_hand():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(5, 6, generator=g), torch.randn(5, 3, generator=g) * 4  # widths may differ
    loss_d, loss_a = _rkd_by_hand(s.double().numpy(), t.double().numpy())
    assert rkd_distance_loss(s, t).item() == pytest.approx(loss_d, rel=1e-4)
    assert rkd_angle_loss(s, t).item() == pytest.approx(loss_a, rel=1e-4)
    # relations are scale-free: a scaled copy of the teacher costs nothing
    assert rkd_distance_loss(t * 3, t).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_angle_loss(t * 3, t).item() == pytest.approx(0.0, abs=1e-6)


# ---- CRD -----------------------------------------------------------------------------------
def test_crd_pieces_by_hand():
    g = torch.Generator().manual_seed(3)
    anchor = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=1)
    rows = torch.randn(3, 5, 4, generator=g)  # positive + 4 negatives per anchor
    scores = contrast_scores(anchor, rows, 0.5)
    for b in range(3):
        for k in range(5):
            assert scores[b, k].item() == pytest.approx(math.exp(float(rows[b, k] @ anchor[b]) / 0.5), rel=1e-5)
    x = torch.rand(3, 5, generator=g) * 0.01
    n, m, eps = 50, 4, 1e-7
    expected = 0.0
    for b in range(3):
        expected += math.log(x[b, 0] / (x[b, 0] + m / n + eps))
        expected += sum(math.log((m / n) / (x[b, k] + m / n + eps)) for k in range(1, 5))
    assert nce_loss(x, n).item() == pytest.approx(-expected / 3, rel=1e-5)
    old, new = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    mixed = 0.5 * old.double().numpy() + 0.5 * new.double().numpy()
    np.testing.assert_allclose(momentum_update(old, new, 0.5).double().numpy(),
                               mixed / np.linalg.norm(mixed, axis=1, keepdims=True), rtol=1e-5)


def test_crd_negatives_exclude_the_positive():
    indices = torch.tensor([0, 3, 4])
    negatives = sample_negatives(indices, 5, 1000)
    assert negatives.shape == (3, 1000)
    assert negatives.min() >= 0 and negatives.max() <= 4
    assert not (negatives == indices[:, None]).any()
    for row, positive in zip(negatives, indices.tolist()):  # every other index is drawn
        assert set(row.tolist()) == set(range(5)) - {positive}


# ---- CC ------------------------------------------------------------------------------------
def test_cc_by_hand():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    a, b = s.double().numpy(), t.double().numpy()
    expected = np.mean([sum(abs(a[i, d] - b[i, d]) * abs(a[i + 1, d] - b[i + 1, d]) for d in range(3))
                        for i in range(3)])
    assert cc_loss(s, t).item() == pytest.approx(expected, rel=1e-5)
    assert cc_loss(s[:1], t[:1]).item() == 0.0


# ---- RSD -----------------------------------------------------------------------------------
def test_rsd_by_hand():
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g) * 2 + 1
    a, b = s.double().numpy(), t.double().numpy()
    eps, lam, n, d = 1e-5, 0.01, 6, 3

    def standardized(x, i, dim):
        col = x[:, dim]
        mean = sum(col) / n
        var = sum((v - mean) ** 2 for v in col) / n
        return (x[i, dim] - mean) / math.sqrt(var + eps)

    c = [[sum(standardized(a, k, i) * standardized(b, k, j) for k in range(n)) / n for j in range(d)] for i in range(d)]
    expected = sum((1 - c[i][i]) ** 2 for i in range(d)) + lam * sum(
        c[i][j] ** 2 for i in range(d) for j in range(d) if i != j
    )
    assert rsd_loss(s, t, lam).item() == pytest.approx(expected, rel=1e-5)
    # equal up to an affine map per dimension: the diagonal of C is 1 (up to eps)
    assert rsd_loss(t * 3 - 1, t, 0.0).item() == pytest.approx(0.0, abs=1e-4)


# ---- logit standardization: invariance to the teacher's logit shift and scale ------------------
@pytest.mark.parametrize(("method", "extra"), [("kd", {}), ("dkd", {}), ("dist", {}), ("ofa", {"teacher_dim": 64})])
def test_logit_standardization_invariance(method, extra):
    torch.manual_seed(0)
    student = tiny("deit")
    images, targets = torch.randn(4, 3, 32, 32), torch.tensor([1, 2, 3, 4])
    z = torch.randn(4, 10) * 3
    shifted = z * 2.5 + torch.randn(4, 1) * 5  # per-sample shift, positive scale

    def losses(standardize, teacher_logits):
        torch.manual_seed(1)  # the same OFA branches each time
        distiller = ofakd.create_distiller(method, None, student, num_teacher_classes=10, input_size=(3, 32, 32),
                                           logit_standardization=standardize, temperature=2.0, **extra)
        distiller.eval()
        with torch.no_grad():
            return distiller.distill(images, targets, ModelOutput(teacher_logits))[1]

    base, moved = losses(True, z), losses(True, shifted)
    assert base.keys() == moved.keys()
    for key in base:
        assert base[key].item() == pytest.approx(moved[key].item(), rel=1e-4, abs=1e-5), key
    plain, plain_moved = losses(False, z), losses(False, shifted)
    assert any(abs(plain[k].item() - plain_moved[k].item()) > 1e-3 for k in plain if k != "gt")
