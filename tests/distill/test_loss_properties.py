"""Properties of the pure logit losses (OFA, KD, DKD, DIST, soft cross-entropy, logit
standardization) over random logits, extreme ones (|z| up to 1e4) included, in float32 and with
bfloat16 inputs.

Tolerances are rounding bounds: a loss is a weighted sum of log-probabilities, and with
p = softmax(z / T) every |log p_c| <= 2·max|z| / T + log K, so float32 rounding moves it by a few
ε32 · (1 + that bound) (:func:`rounding_tolerance`).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ofakd.distill.dist import dist_loss
from ofakd.distill.dkd import dkd_loss, dkd_terms
from ofakd.distill.kd import kd_loss
from ofakd.distill.logit_standardization import standardize
from ofakd.distill.ofa import ofa_loss
from ofakd.distill.targets import one_hot_targets, soft_cross_entropy

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)
DTYPES = [torch.float32, torch.bfloat16]
MAX_LOGIT = 1e4
FLOAT32_EPS = torch.finfo(torch.float32).eps
temperatures = st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0])
"""Powers of two: z / T is exact, so an exact shift of z stays exact after the division."""


# ---- inputs --------------------------------------------------------------------------------
@st.composite
def logit_pairs(draw, dtype=torch.float32):
    """Student and teacher logits (B, K) as ``dtype``, all within 10 or within 1e4 (the bounds included),
    and a target class per row."""
    batch, classes = draw(st.integers(1, 4)), draw(st.integers(2, 8))
    limit = draw(st.sampled_from([10.0, MAX_LOGIT]))
    value = st.floats(-limit, limit, width=32)
    logits = draw(arrays(np.float32, (2, batch, classes), elements=value, fill=st.nothing()))
    targets = draw(arrays(np.int64, (batch,), elements=st.integers(0, classes - 1)))
    logits = torch.from_numpy(logits).to(dtype)
    return logits[0], logits[1], torch.from_numpy(targets)


@st.composite
def exactly_shifted_logit_pairs(draw, dtype):
    """``(z_s, z_t, target)`` and the same with a constant added to each row (student and teacher rows
    each their own), all on a grid n · 2^e with |n| <= 2^(bits - 2), bits the significand of ``dtype``:
    z + c and z + c - max(z + c) are exact, so the shift itself adds no rounding. |z| <= 2^14."""
    bits = round(-math.log2(torch.finfo(dtype).eps)) + 1  # 24 for float32, 8 for bfloat16
    half = 2 ** (bits - 2)
    step = 2.0 ** draw(st.integers(-8 - (bits - 2), 14 - (bits - 2)))
    batch, classes = draw(st.integers(1, 4)), draw(st.integers(2, 8))
    grid = st.integers(-half, half)
    logits = draw(arrays(np.int64, (2, batch, classes), elements=grid, fill=st.nothing()))
    shifts = draw(arrays(np.int64, (2, batch, 1), elements=grid, fill=st.nothing()))
    targets = torch.from_numpy(draw(arrays(np.int64, (batch,), elements=st.integers(0, classes - 1))))
    z, shifted = (torch.from_numpy(n * step).to(dtype) for n in (logits, logits + shifts))
    return (z[0], z[1], targets), (shifted[0], shifted[1], targets)


# ---- the losses, as loss(z_s, z_t, target, T) -----------------------------------------------
def ofa_with(eps):
    def loss(z_s, z_t, target, temperature):
        return ofa_loss(z_s, z_t, one_hot_targets(target, z_s.shape[1]), eps, temperature)

    return loss


SHIFT_INVARIANT_LOSSES = {
    "kd": lambda z_s, z_t, target, temperature: kd_loss(z_s, z_t, temperature),
    "dkd": lambda z_s, z_t, target, temperature: dkd_loss(z_s, z_t, target, temperature=temperature),
    "dist": lambda z_s, z_t, target, temperature: dist_loss(z_s, z_t, temperature=temperature),
    "ofa_eps_0.5": ofa_with(0.5),
    "ofa_eps_1.5": ofa_with(1.5),
}
LOSSES = {
    **SHIFT_INVARIANT_LOSSES,
    "soft_ce_to_teacher": lambda z_s, z_t, target, temperature: soft_cross_entropy(z_s, F.softmax(z_t.float(), 1)),
    "soft_ce_to_class": lambda z_s, z_t, target, temperature: soft_cross_entropy(z_s, target),
    "kd_standardized": lambda z_s, z_t, target, temperature: kd_loss(standardize(z_s), standardize(z_t), temperature),
}


# ---- tolerances ----------------------------------------------------------------------------
def log_prob_bound(*logits: torch.Tensor, temperature: float = 1.0) -> float:
    """An upper bound on |log softmax(z / T)_c| over the rows of ``logits``: 2·max|z| / T + log K."""
    largest = max(z.float().abs().max().item() for z in logits)
    return 2 * largest / temperature + math.log(logits[0].shape[1])


def rounding_tolerance(*logits: torch.Tensor, temperature: float = 1.0, ulps: int = 16) -> float:
    """``ulps · ε32 · (1 + log_prob_bound)``: how far float32 rounding can move a loss built from these logits."""
    return ulps * FLOAT32_EPS * (1 + log_prob_bound(*logits, temperature=temperature))


# ---- OFA -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@PROPERTY
@given(data=st.data(), temperature=temperatures)
def test_ofa_at_eps_one_is_soft_cross_entropy_to_teacher_probabilities(dtype, data, temperature):
    """ε = 1: weight (p_t + m) - m = p_t, so L = -Σ_c p_t,c log p_s,c."""
    z_s, z_t, target = data.draw(logit_pairs(dtype))
    ofa = ofa_with(1.0)(z_s, z_t, target, temperature)
    soft_ce = soft_cross_entropy(z_s.float() / temperature, F.softmax(z_t.float() / temperature, dim=1))
    assert abs(ofa.item() - soft_ce.item()) <= rounding_tolerance(z_s, z_t, temperature=temperature)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@PROPERTY
@given(data=st.data(), eps=st.floats(0.1, 4.0), temperature=temperatures)
def test_ofa_is_non_negative(dtype, data, eps, temperature):
    """Every weight (1 + p_t)^ε - 1 or p_t^ε is >= 0 and every -log p_s >= 0."""
    z_s, z_t, target = data.draw(logit_pairs(dtype))
    loss = ofa_with(eps)(z_s, z_t, target, temperature)
    assert loss.item() >= -rounding_tolerance(z_s, z_t, temperature=temperature, ulps=4)


# ---- every loss ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@PROPERTY
@given(data=st.data(), temperature=temperatures)
def test_losses_ignore_a_constant_added_to_a_row(dtype, data, temperature):
    """softmax(z + c) = softmax(z) for a per-row constant c, so L(z_s + c_s, z_t + c_t) = L(z_s, z_t)
    (KD, DKD, DIST, OFA). The shifts are exact, so in practice the two values are bit-identical."""
    original, shifted = data.draw(exactly_shifted_logit_pairs(dtype))
    tolerance = rounding_tolerance(*original[:2], temperature=temperature, ulps=4)
    for name, loss in SHIFT_INVARIANT_LOSSES.items():
        before, after = loss(*original, temperature), loss(*shifted, temperature)
        assert abs(after.item() - before.item()) <= tolerance, name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@PROPERTY
@given(data=st.data(), temperature=temperatures)
def test_losses_and_their_student_gradients_are_finite(dtype, data, temperature):
    """Extreme logits included: every loss works in log space (log_softmax, logsumexp), never log(softmax)."""
    z_s, z_t, target = data.draw(logit_pairs(dtype))
    for name, loss_fn in LOSSES.items():
        student = z_s.clone().requires_grad_(True)
        loss = loss_fn(student, z_t, target, temperature)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(student.grad).all(), name


@PROPERTY
@given(data=st.data(), temperature=temperatures)
def test_bfloat16_inputs_are_computed_in_float32(data, temperature):
    """A bf16 input gives the float32 result of its (exact) float32 upcast, and that gradient rounded to bf16."""
    z_s, z_t, target = data.draw(logit_pairs(torch.bfloat16))
    for name, loss_fn in LOSSES.items():
        results = []
        for dtype in (torch.bfloat16, torch.float32):
            student = z_s.to(dtype, copy=True).requires_grad_(True)
            loss = loss_fn(student, z_t.to(dtype), target, temperature)
            loss.backward()
            results.append((loss, student.grad))
        (loss_bf16, grad_bf16), (loss_fp32, grad_fp32) = results
        assert loss_bf16.dtype == torch.float32 and torch.equal(loss_bf16, loss_fp32), name
        assert torch.equal(grad_bf16, grad_fp32.to(torch.bfloat16)), name


# ---- DKD -----------------------------------------------------------------------------------
@PROPERTY
@given(data=st.data(), temperature=temperatures)
def test_kd_is_tckd_plus_nckd_weighted_by_teacher_non_target_mass(data, temperature):
    """Per sample, with the teacher's p_t,y of the target class y (Zhao et al., CVPR 2022):

        KL(p_t ‖ p_s) = TCKD + (1 - p_t,y) · NCKD

    TCKD = KL of the binary (target, rest) distributions, NCKD = KL among the non-target classes;
    kd_loss and dkd_terms both carry T², so it holds at any T. The weight is the teacher's
    (not the student's) non-target mass, computed as Σ_{c≠y} p_t,c (no cancellation in 1 - p_t,y)."""
    z_s, z_t, target = data.draw(logit_pairs())
    for row in range(len(target)):
        one = slice(row, row + 1)
        p_t = F.softmax(z_t[one] / temperature, dim=1)
        non_target_mass = p_t.masked_fill(one_hot_targets(target[one], p_t.shape[1]).bool(), 0.0).sum()
        tckd, nckd = dkd_terms(z_s[one], z_t[one], target[one], temperature)
        kd = kd_loss(z_s[one], z_t[one], temperature)
        tolerance = rounding_tolerance(z_s[one], z_t[one], temperature=temperature) * temperature**2
        assert abs(kd.item() - (tckd + non_target_mass * nckd).item()) <= tolerance


# ---- logit standardization -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@PROPERTY
@given(data=st.data())
def test_standardized_rows_have_mean_zero_and_unit_std(dtype, data):
    """standardize(z) = (z - mean z) / (std z + 1e-7): mean 0 (to the rounding of z - mean z, relative to
    std z), and std 1 unless the row is nearly constant (std z <= 1e-3, where the 1e-7 shows)."""
    z, _, _ = data.draw(logit_pairs(dtype))
    row_std = z.float().std(dim=1, keepdim=True)
    out = standardize(z)
    assert torch.isfinite(out).all()
    mean_tolerance = 16 * FLOAT32_EPS * (1 + z.float().abs().max(dim=1, keepdim=True).values / (row_std + 1e-7))
    assert (out.mean(dim=1, keepdim=True).abs() <= mean_tolerance).all()
    spread = row_std[:, 0] > 1e-3
    assert torch.allclose(out.std(dim=1)[spread], torch.ones(int(spread.sum())), atol=1e-4)
