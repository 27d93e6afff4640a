"""examples/lightning_distill.py: a LightningModule around a distiller trains a few bf16-mixed steps; the teacher
stays frozen and out of the checkpoint, the OFA branches train. Runs when Lightning is installed
(``pip install -e '.[lightning]'``; the test extra has it)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tests import REPO

pytest.importorskip("lightning")

EXAMPLE = REPO / "examples" / "lightning_distill.py"


def load_example():
    spec = importlib.util.spec_from_file_location("lightning_distill", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_lightning_module_distils_with_a_frozen_teacher_out_of_the_checkpoint(tmp_path):
    example = load_example()
    args = example.parse(["--teacher", "test_byobnet", "--student", "test_vit", "--method", "ofa", "--steps", "3",
                          "--image-size", "32", "--batch-size", "8", "--accelerator", "cpu", "--out", str(tmp_path)])
    built, trainer = example.build(args)
    seen = []

    class Recording(example.DistillationModule):
        def training_step(self, batch, batch_index):
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return super().training_step(batch, batch_index)

    module = Recording(built.distiller, lr=1e-2)
    distiller = module.distiller
    teacher_before = {k: v.clone() for k, v in distiller.teacher.model.state_dict().items()}
    branches_before = {k: v.clone() for k, v in distiller.branches.state_dict().items()}
    train = example.fake_loader(8 * 3, 32, 10, 8, seed=0)
    trainer.fit(module, train, example.fake_loader(8, 32, 10, 8, seed=1))

    assert trainer.global_step == 3 and seen == [(True, torch.bfloat16)] * 3
    assert all(torch.equal(v, teacher_before[k]) for k, v in distiller.teacher.model.state_dict().items())
    assert all(p.grad is None for p in distiller.teacher.model.parameters())
    assert any(not torch.equal(v, branches_before[k]) for k, v in distiller.branches.state_dict().items())
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    saved = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert {k.split(".")[1] for k in saved} == {"student", "branches"}  # distiller.student.*, distiller.branches.*
    assert "val/top1" in trainer.callback_metrics
