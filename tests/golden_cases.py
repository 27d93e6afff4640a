"""Golden-value cases: every method built from fixed seeds on tiny models, and the numbers it computes.

One definition, used by ``tests/distill/test_golden.py`` (compare) and ``tests/fixtures/make_golden.py``
(regenerate). A case's values are the loss terms of one training-mode forward
(``student_logits, losses = distiller(images, targets)``; a few in a row, each followed by
``on_step_end``, where a method carries state from step to step) and, for OFA, the sum and the absolute
sum of each branch's logits. Every random draw is seeded here (teacher, student, the method's own
modules and memory bank, inputs, CRD's negatives), so a case's values do not depend on what ran
before it. The models are defined here, not borrowed from ``tiny_models.py``, so that other tests
can change their models without touching the fixture.

Values are float32 computations on one CPU thread (as conftest.py sets); other BLAS builds or
torch/timm versions may round or initialise differently: see make_golden.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from timm.models.mlp_mixer import MlpMixer

import ofakd

NUM_CLASSES = 10
BATCH = 4
NUM_SAMPLES = 16
"""Dataset size for CRD's memory bank (15 negatives per anchor)."""
SAMPLE_INDICES = (0, 5, 7, 11)
"""Dataset indices of the batch (CRD reads and updates these memory-bank rows)."""
FIXTURE = Path(__file__).parent / "fixtures" / "golden_losses.json"
SEEDS = {"teacher": 0, "student": 1, "distiller": 2, "inputs": 3, "forward": 4}


def cnn(size: int):
    """ResNet-18 layout at 1/8 width (8-64 channels), any input size; residual branches not zero-initialised, so
    every conv matters. Stage features are maps."""
    return ofakd.create_model(
        "resnet18", num_classes=NUM_CLASSES, channels=(8, 16, 32, 64), stem_width=8, zero_init_last=False
    )


def vit(size: int, patch_size: int = 4, depth: int = 4, embed_dim: int = 32):
    """DeiT-style ViT with a class token; stage features are tokens."""
    return ofakd.create_model(
        "deit_tiny_patch16_224", num_classes=NUM_CLASSES, img_size=size, patch_size=patch_size, depth=depth,
        embed_dim=embed_dim, num_heads=2,
    )


def vit_56_tokens(size: int):
    """ViT with one token per pixel: a 56x56 grid needs three patch merges (56 -> 28 -> 14 -> 7),
    so the branch's GELU rule (after the first merge, after middle ones, not after the last) is exercised."""
    return vit(size, patch_size=1, depth=2, embed_dim=16)


def mixer(size: int):
    """MLP-Mixer, no class token: a 16x16 grid gets a single patch merge (GELU after it: the first always)."""
    return MlpMixer(num_classes=NUM_CLASSES, img_size=size, patch_size=2, num_blocks=4, embed_dim=32)


MODELS = {"cnn": cnn, "vit": vit, "vit_56_tokens": vit_56_tokens, "mixer": mixer}


@dataclass(frozen=True)
class Case:
    method: str
    teacher: str | None
    """A key of MODELS, or None for a method without a teacher."""
    student: str
    options: dict = field(default_factory=dict)
    image_size: int = 32
    forwards: int = 1
    """Forwards in a row on the same batch, each followed by ``on_step_end`` as the engine calls it (CRD: the
    second scores against the bank the first updated; PAT: the second reads the first's feedback)."""
    prepare: Callable | None = None
    """Applied to the built distiller before the first forward (e.g. :func:`open_prompts`)."""


def open_prompts(distiller) -> None:
    """PAT's prompt gates β start at 0 (the prompted teacher equals the plain one); set them to 0.5, as training
    would move them, so that the prompts and their feedback change the teacher in the values."""
    with torch.no_grad():
        for prompt in distiller.branches["prompts"]:
            prompt.beta.fill_(0.5)


OFA_EPS_PER_STAGE = [1.2, 1.4, 1.6, 1.8, 1.5]
"""ε per stage and for the final logits; ε ≠ 1 so the target-enhanced weighting matters."""

CASES = {
    "vanilla": Case("vanilla", None, "cnn"),
    "kd": Case("kd", "vit", "cnn", {"temperature": 4.0}),
    "kd_ls": Case("kd", "vit", "cnn", {"temperature": 2.0, "logit_standardization": True}),
    "dkd": Case("dkd", "vit", "cnn", {"temperature": 4.0}),
    "dist": Case("dist", "vit", "cnn"),
    "fitnet": Case("fitnet", "vit", "cnn"),
    "rkd": Case("rkd", "vit", "cnn"),
    "crd": Case("crd", "vit", "cnn", forwards=2),
    "cc": Case("cc", "vit", "cnn"),
    "rsd": Case("rsd", "vit", "cnn"),
    "ofa_map_student": Case("ofa", "vit", "cnn", {"eps": OFA_EPS_PER_STAGE}),
    "ofa_token_student": Case("ofa", "cnn", "vit_56_tokens", {"eps": [1.5]}, image_size=56),
    "ofa_mixer_student": Case("ofa", "cnn", "mixer", {"eps": [1.5]}),
    "ofa_ls": Case("ofa", "vit", "cnn", {"eps": OFA_EPS_PER_STAGE, "temperature": 2.0, "logit_standardization": True}),
    "pat_cnn_to_vit": Case("pat", "cnn", "vit", {"temperature": 2.0}, forwards=2, prepare=open_prompts),
    "pat_vit_to_cnn": Case("pat", "vit", "cnn", {"prompt_stages": [2, 4], "num_queries": 16, "query_dim": 64},
                           forwards=2, prepare=open_prompts),
    "pat_cnn_to_mixer": Case("pat", "cnn", "mixer", forwards=2, prepare=open_prompts),
}


def build_distiller(case: Case):
    """The case's distiller, every module initialised from its own seed."""
    teacher = None
    if case.teacher is not None:
        torch.manual_seed(SEEDS["teacher"])
        teacher = MODELS[case.teacher](case.image_size)
    torch.manual_seed(SEEDS["student"])
    student = MODELS[case.student](case.image_size)
    torch.manual_seed(SEEDS["distiller"])  # branches, projectors, CRD's memory bank
    return ofakd.create_distiller(
        case.method, teacher, student, input_size=(3, case.image_size, case.image_size), num_samples=NUM_SAMPLES,
        **case.options,
    )


def make_inputs(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(SEEDS["inputs"])
    return torch.randn(BATCH, 3, case.image_size, case.image_size), torch.randint(0, NUM_CLASSES, (BATCH,))


def record_branch_logits(distiller, values: dict[str, float]) -> None:
    """Forward hooks that store the sum and absolute sum of each OFA branch's logits in ``values``
    (the first forward's)."""

    def hook(stage):
        def store(module, args, logits):
            values.setdefault(f"branch.{stage}.logits_sum", logits.sum().item())
            values.setdefault(f"branch.{stage}.logits_abs_sum", logits.abs().sum().item())

        return store

    for stage, branch in distiller.branches.items():
        branch.register_forward_hook(hook(stage))


def compute_values(name: str) -> dict[str, float]:
    """``{"loss.<term>": value}`` (a later forward's terms as ``forward2.loss.<term>``) and, for OFA,
    ``branch.<stage>.logits_sum`` and ``branch.<stage>.logits_abs_sum``."""
    case = CASES[name]
    distiller = build_distiller(case).train()
    images, targets = make_inputs(case)
    values: dict[str, float] = {}
    if case.method == "ofa":
        record_branch_logits(distiller, values)
    if case.prepare is not None:
        case.prepare(distiller)
    torch.manual_seed(SEEDS["forward"])  # CRD's negatives
    for forward in range(1, case.forwards + 1):
        prefix = "" if forward == 1 else f"forward{forward}."
        with torch.no_grad():
            _, losses = distiller(images, targets, sample_indices=torch.tensor(SAMPLE_INDICES))
        distiller.on_step_end()
        values.update({f"{prefix}loss.{term}": loss.item() for term, loss in losses.items()})
    return values



def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "timm": timm.__version__}


def fixture_document(values: dict[str, dict[str, float]]) -> str:
    """The fixture file's text: how it was made, the versions, the values (floats round-trip exactly)."""
    document = {
        "about": "Expected values of tests/golden_cases.py; regenerate with tests/fixtures/make_golden.py "
        "(read its docstring first).",
        "versions": versions(),
        "cases": values,
    }
    return json.dumps(document, indent=1) + "\n"
