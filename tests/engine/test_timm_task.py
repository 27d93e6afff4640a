"""ofakd inside timm's task API: ``ofakd.timm_task`` is a ``timm.task.TrainingTask``; at KD's settings its loss is
timm's own ``LogitDistillationTask``'s on the same batch, an OFA task trains (branches included), timm's optimizer,
EMA, checkpoint state and DDP wrapping see the student and the branches, never the teacher."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.optim import create_optimizer_v2
from timm.task import LogitDistillationTask, TrainingTask
from torch import nn

import ofakd
from ofakd.engine.timm_task import DistillerTask
from tests.tiny_models import TINY_VIT


def teacher_and_student(seed: int = 0):
    """A ResNet teacher (ImageNet mean/std) and a tiny ViT student (mean/std 0.5: the batches' normalisation, so the
    teacher sees them re-normalised), both randomly initialised, 10 classes, 32 px."""
    torch.manual_seed(seed)
    teacher = ofakd.create_model("resnet18", num_classes=10)
    student = ofakd.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT)
    return teacher, student


def batch(n: int = 8, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=generator), torch.randint(0, 10, (n,), generator=generator)


@pytest.mark.parametrize(("timm_weights", "ofakd_weights"), [
    (dict(), dict()),  # timm's default: both weights 1
    (dict(task_loss_weight=0.3), dict(gt_weight=0.3, kd_weight=0.7)),  # timm's complementary weights
])
def test_kd_task_loss_equals_timms_logit_distillation_task(timm_weights, ofakd_weights):
    teacher, student = teacher_and_student()
    timm_task = LogitDistillationTask(student, copy.deepcopy(teacher), criterion=nn.CrossEntropyLoss(),
                                      temperature=4.0, verbose=False, **timm_weights)
    task = ofakd.timm_task("kd", teacher=teacher, student=student, temperature=4.0, verbose=False, **ofakd_weights)
    assert isinstance(task, TrainingTask)
    images, targets = batch()
    theirs, ours = timm_task(images, targets), task(images, targets)
    assert torch.allclose(ours["output"], theirs["output"])  # one student
    torch.testing.assert_close(ours["kd_loss"], timm_task.distill_loss_weight * theirs["kd_loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours["gt_loss"], timm_task.task_loss_weight * theirs["task_loss"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours["loss"], theirs["loss"], rtol=1e-5, atol=1e-6)
    assert theirs["kd_loss"] > 1e-3  # a term that could differ: the random teacher is far from the student


def test_an_ofa_task_trains_its_student_and_branches_with_timms_optimizer():
    teacher, student = teacher_and_student()
    task = ofakd.timm_task("ofa", teacher=teacher, student=student, verbose=False)
    trainable = task.get_trainable_module()
    optimizer = create_optimizer_v2(trainable, opt="adamw", lr=2e-3, weight_decay=0.0)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in [*student.parameters(), *task.distiller.branches.parameters()]}
    assert not optimized & {id(p) for p in teacher.parameters()}

    images, targets = batch()
    losses = []
    trainable.train()
    for step in range(6):
        result = task(images, targets)
        assert {"loss", "output", "gt_loss", "kd_loss", "ofa_s1_loss", "ofa_s4_loss"} <= set(result)
        optimizer.zero_grad()
        result["loss"].backward()
        if step == 0:
            branch_grads = [p.grad for p in task.distiller.branches.parameters()]
            assert branch_grads and all(g is not None and g.abs().sum() > 0 for g in branch_grads)
            assert all(p.grad is None for p in teacher.parameters())
        optimizer.step()
        losses.append(result["loss"].item())
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0] - 0.3, losses  # it learns

    assert task.get_eval_model() is student  # timm validates and saves the bare student
    state = task.get_checkpoint_state()
    assert set(state["state_dict"]) == set(student.state_dict())
    branches = state["task_state"]["branches"]
    assert set(branches) == set(task.distiller.branches.state_dict())
    ema = task.setup_ema(decay=0.5)
    assert ema.module.teacher is None and task.distiller.teacher is not None  # the EMA copy holds no teacher
    assert task.get_eval_model(ema=True) is ema.module.student
    task.update_ema()


def test_checkpoint_state_restores_the_student_and_the_branches():
    teacher, student = teacher_and_student()
    saved = ofakd.timm_task("ofa", teacher=teacher, student=student, verbose=False)
    state = saved.get_checkpoint_state()
    torch.manual_seed(5)
    other = ofakd.timm_task("ofa", teacher=teacher, verbose=False,
                            student=ofakd.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT))

    def same(task: DistillerTask) -> tuple[bool, bool]:
        pairs = [(task.distiller.student.state_dict(), student.state_dict()),
                 (task.distiller.branches.state_dict(), saved.distiller.branches.state_dict())]
        return tuple(all(torch.equal(mine[k], theirs[k]) for k in theirs) for mine, theirs in pairs)

    assert same(other) == (False, False)
    other.load_checkpoint_state(state["state_dict"], state["task_state"])
    assert same(other) == (True, True)


def test_prepare_distributed_wraps_the_distiller_not_the_teacher(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    teacher, student = teacher_and_student()
    task = ofakd.timm_task("kd", teacher=teacher, student=student, verbose=False)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        assert task.prepare_distributed() is task
        wrapped = task.get_trainable_module()
        assert isinstance(wrapped, DistributedDataParallel) and wrapped.module is task.distiller
        assert not {id(p) for p in teacher.parameters()} & {id(p) for p in wrapped.parameters()}
        images, targets = batch()
        task(images, targets)["loss"].backward()
        assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
        assert task.get_eval_model() is student
    finally:
        dist.destroy_process_group()


def test_distiller_task_takes_a_distiller_built_in_python():
    teacher, student = teacher_and_student()
    distiller = ofakd.create_distiller("dkd", teacher=teacher, student=student, mean=(0.5,) * 3, std=(0.5,) * 3)
    task = DistillerTask(distiller, verbose=False)
    images, targets = batch()
    logits, losses = distiller(images, targets)
    result = task(images, targets)
    assert torch.equal(result["output"], logits)
    assert torch.allclose(result["loss"], sum(losses.values()))
