"""PAT, Perspective-Aware Teaching (ICCV 2025; the authors' code: github.com/jimmylin0979/PAT): prompts
inside the frozen teacher adapt its view to the student, fed back from the student every step.

One step, with s_k the student's and t_k the teacher's stage-k features (k = 1..4, the stage map of
:mod:`ofakd.models.stages`), z the logits:

1. the plain teacher (frozen, no autograd) gives z_t;
2. the **prompted teacher** — the same frozen teacher with a prompt block on the input of each stage in
   ``prompt_stages``, each fed the previous step's gap g_k (:mod:`.pat_prompts`) — gives z_p and stage
   features p_k with autograd on: the teacher's weights stay frozen, gradients reach the prompts;
3. **region-aware attention** turns s_1..s_4 into ``num_queries / 4`` region tokens per stage
   (:mod:`.pat_attention`); an aligner A_k (:mod:`.pat_projectors`) maps stage k's onto p_k's layout;
4. the loss terms (the dict's keys; weights w from the options)::

       gt      = CE(z_s, y)
       kd      = w_kd  · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T))
       pat_mse = w_mse · Σ_k HCL(A_k, p_k)                   (hierarchical MSE, :func:`hcl_loss`)
       pat_reg = w_reg · KL(softmax(z_t) ‖ softmax(z_p))      (keeps the prompted teacher's predictions)

   pat_mse trains the student, the attention and the aligners and, through p_k, the prompts; pat_reg the
   prompts only;
5. g_k = A_k − p_k (detached) is the next step's feedback (:mod:`.pat_feedback`: per process, in the state
   dict, committed once the optimizer took the step).

**How the prompts get inside the teacher.** The authors rewrite the forward of each teacher family they
support (ViT, Swin, ConvNeXt, MLP-Mixer, ResNet) to call a prompt between blocks. Here the teacher runs its
own forward — the same :class:`~ofakd.models.tap.ModelTap` as the plain call (timm's ``forward_intermediates``,
or forward hooks on named stage modules for any nn.Module) — through
:meth:`LiveTeacher.forward_adapted <ofakd.teacher.live.LiveTeacher.forward_adapted>`, which places a forward
pre-hook on the module that starts each prompted stage for that one call
(:func:`~ofakd.models.stages.stage_input_modules`, :mod:`ofakd.models.input_adapters`) and removes it after:
the hook hands the module ``prompt(input)`` instead of its input. The model's code and attributes are never
changed, and any teacher whose stages ofakd can tap can be prompted. The prompts, the attention, the aligners
and the feedback are the distiller's (``branches.*``): saved and resumed with it; the teacher's weights are
not. The teacher runs twice per step (plain, then prompted), so PAT needs the live teacher (no logits-only
cache) and cannot be combined with other methods.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ..errors import ModelError
from ..models.input_adapters import adapted_inputs
from ..models.stages import stage_input_modules, stage_positions
from ..models.tap import ModelOutput
from ..teacher.feature_check import check_features
from .base import Distiller, LossWeight, Stages
from .float32 import float32_loss
from .kd import LogitOptions, kd_loss
from .pat_attention import HEADS, RegionAttention
from .pat_feedback import FeedbackMemory
from .pat_layout import Layout
from .pat_projectors import layout_projector
from .pat_prompts import PromptBlock, StageInput
from .registry import register_method

STAGES = (1, 2, 3, 4)
HCL_LEVELS = (4, 2, 1)


@float32_loss
def hcl_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Hierarchical MSE of two (B, C, h, w) maps: the full-resolution MSE and the MSEs after adaptive average
    pooling to l × l for each l in (4, 2, 1) below h, weighted 1/2, 1/4, 1/8 in the order kept:

        L = (MSE(s, t) + Σ_j 2^-j · MSE(pool_lj(s), pool_lj(t))) / (1 + Σ_j 2^-j)
    """
    loss, weight, total = F.mse_loss(student, teacher), 1.0, 1.0
    for level in HCL_LEVELS:
        if level >= student.shape[2]:
            continue
        weight /= 2
        pooled = F.mse_loss(F.adaptive_avg_pool2d(student, level), F.adaptive_avg_pool2d(teacher, level))
        loss, total = loss + weight * pooled, total + weight
    return loss / total


class PATOptions(LogitOptions):
    prompt_stages: Stages = [1, 2, 3, 4]
    """Teacher stages (1-4) whose input gets a prompt block (the authors' pat_afp_stage)."""
    mse_weight: LossWeight = 1.0
    """Weight of the hierarchical MSE between the aligned student and the prompted teacher's stage features."""
    reg_weight: LossWeight = 1.0
    """Weight of KL(plain teacher ‖ prompted teacher), which keeps the prompted teacher's predictions."""
    num_queries: int = Field(64, ge=4)
    """Region tokens of the region-aware attention over the four stages: 4·n² (n × n regions per stage)."""
    query_dim: int = Field(512, ge=HEADS)
    """Width of the region tokens (a multiple of the attention's 8 heads)."""
    feature_indices: list[int] | None = None
    """Explicit feature_info positions of the student's four stages (default: the documented stage map)."""
    teacher_feature_indices: list[int] | None = None
    """Explicit feature_info positions of the teacher's four stages (default: the documented stage map)."""

    @model_validator(mode="after")
    def _region_grid(self) -> PATOptions:
        per_stage = self.num_queries // len(STAGES)
        if self.num_queries % len(STAGES) or math.isqrt(per_stage) ** 2 != per_stage:
            raise ValueError(f"num_queries must be 4·n² (n × n regions per stage: 4, 16, 36, 64, ...), got "
                             f"{self.num_queries}")
        if self.query_dim % HEADS:
            raise ValueError(f"query_dim must be a multiple of the {HEADS} attention heads, got {self.query_dim}")
        return self


@register_method("pat")
class PAT(Distiller):
    summary = ("PAT: feedback-driven prompts adapt the frozen teacher's stages; region attention + hierarchical "
               "MSE on stage features, prompted-teacher regulariser, KD")
    Options = PATOptions
    needs_teacher_features = True
    solo_reason = "it runs the teacher a second time, with its prompts, on the batch's images"

    def __init__(self, teacher, student, options: PATOptions, **kwargs) -> None:
        check_features(type(self), teacher)  # before its model is read: the live teacher, or an error
        student_positions = stage_positions(student, STAGES, options.feature_indices, kwargs.get("student_stages"))
        teacher_positions = stage_positions(teacher.model, STAGES, options.teacher_feature_indices, teacher.tap.modules)
        super().__init__(teacher, student, options, student_positions=student_positions,
                         teacher_positions=teacher_positions, **kwargs)
        starts = stage_input_modules(teacher.model, teacher_positions, teacher.tap.modules)
        self.prompt_sites = [starts[stage - 1][0] for stage in options.prompt_stages]
        """The module whose input each prompt replaces, in ``prompt_stages`` order."""
        student_layouts, self.teacher_layouts, stage_inputs = self._probe(starts)
        prompted = [self.teacher_layouts[stage - 1] for stage in options.prompt_stages]
        attention = RegionAttention(student_layouts, options.num_queries, options.query_dim)
        self.branches = nn.ModuleDict({
            "prompts": nn.ModuleList(
                PromptBlock(stage_inputs[stage - 1], layout) for stage, layout in zip(options.prompt_stages, prompted)
            ),
            "attention": attention,
            "aligners": nn.ModuleList(layout_projector(attention.regions, layout) for layout in self.teacher_layouts),
            "feedback": FeedbackMemory(prompted),
        })

    def _probe(self, starts: list[tuple[str, int | None]]) -> tuple[list[Layout], list[Layout], list[StageInput]]:
        """The student's and the teacher's stage layouts, and the layout of each teacher stage's input (read from
        one forward of a zero batch, with hooks that record what each stage's first module is given)."""
        student_out, student_hw = self.student_tap.probe(self.input_size, role="student")
        teacher_out, teacher_hw = self.teacher.probe(self.input_size)
        seen: list[list[tuple[int, ...]]] = [[] for _ in starts]
        recorders = [(name, lambda x, shapes=shapes: shapes.append(tuple(x.shape)) or x)
                     for (name, _), shapes in zip(starts, seen)]
        with adapted_inputs(self.teacher.model, recorders):
            self.teacher.probe(self.input_size)
        for stage, ((name, _), shapes) in enumerate(zip(starts, seen), start=1):
            if len(shapes) != 1:
                raise ModelError(
                    f"module {name!r} of {type(self.teacher.model).__name__}, the start of teacher stage {stage}, ran "
                    f"{len(shapes)} times in one forward; PAT's prompt needs a module that runs once: pass other "
                    "teacher_feature_indices"
                )
        student_prefix, teacher_prefix = self.student_tap.num_prefix_tokens, self.teacher.tap.num_prefix_tokens
        return (
            [Layout.of_shape(f.shape, student_prefix, student_hw) for f in student_out.select(self.student_tap.positions)],
            [Layout.of_shape(f.shape, teacher_prefix, teacher_hw) for f in teacher_out.select(self.teacher_positions)],
            [StageInput.of_input(shapes[0], channels, teacher_prefix, teacher_hw)
             for (_, channels), shapes in zip(starts, seen)],
        )

    # ---- the teacher ------------------------------------------------------------
    def prompted_teacher(self, images: torch.Tensor) -> ModelOutput:
        """The teacher's output with every prompt on its stage's input, fed the previous step's gaps."""
        gaps, has_feedback = self.branches["feedback"].read(images.shape[0])
        adapters = [
            (site, lambda x, prompt=prompt, gap=gap: prompt(x, gap, has_feedback))
            for site, prompt, gap in zip(self.prompt_sites, self.branches["prompts"], gaps)
        ]
        return self.teacher.forward_adapted(images, adapters)

    # ---- the step ----------------------------------------------------------------
    def distill(self, images, targets, teacher: ModelOutput | None, *, sample_indices=None):
        """The student's forward, the prompted teacher's on the same images, and every term (module docstring)."""
        self._check_teacher_output(teacher)
        student = self.student_tap(images)
        prompted = self.prompted_teacher(images)
        losses = {"gt": self.gt_loss(student.logits, targets)}
        losses.update(self.pat_losses(student, teacher, prompted))
        return student.logits, losses

    def pat_losses(self, student: ModelOutput, teacher: ModelOutput, prompted: ModelOutput) -> dict[str, torch.Tensor]:
        """``kd``, ``pat_mse`` and ``pat_reg`` (weighted) from the student's, the plain and the prompted teacher's
        outputs; stages this step's feedback."""
        opts, branches = self.options, self.branches
        regions = branches["attention"](student.select(self.student_tap.positions))
        mse, gaps = 0.0, []
        for stage, layout, aligner, region, feature in zip(
            STAGES, self.teacher_layouts, branches["aligners"], regions, prompted.select(self.teacher_positions)
        ):
            aligned, target = aligner(region), layout.patches(feature)
            mse = mse + hcl_loss(layout.to_map(aligned), layout.to_map(target))
            if stage in opts.prompt_stages:
                gaps.append(aligned.detach().float() - target.detach().float())
        branches["feedback"].stage(gaps)
        z_s, z_t = opts.loss_logits(student.logits, teacher.logits)
        return {
            "kd": opts.kd_weight * kd_loss(z_s, z_t, opts.temperature),
            "pat_mse": opts.mse_weight * mse,
            "pat_reg": opts.reg_weight * kd_loss(prompted.logits, teacher.logits),
        }

    def on_step_end(self) -> None:
        """The step was taken: its gaps are the next step's feedback."""
        self.branches["feedback"].commit()

    def before_checkpoint(self) -> None:
        """Every process's feedback into the state the main process saves."""
        self.branches["feedback"].gather()
