"""Distil with ofakd from PyTorch Lightning: a LightningModule around a distiller (``pip install -e '.[lightning]'`` from a checkout).

    python examples/lightning_distill.py --teacher resnet18.a1_in1k --teacher-pretrained --student mobilenetv3_small_050 \\
        --method ofa --steps 200

* The teacher stays frozen and out of the checkpoint: the distiller holds it outside its module tree, so
  the module's ``parameters()`` and ``state_dict()`` (what Lightning optimises and saves) hold the student
  and the method's branches only, and ``.to(device)`` moves the teacher with them.
* The branches are trained: the optimizer takes ``distiller.trainable_parameters()`` (student + branches).
* ``precision="bf16-mixed"``: Lightning's autocast covers the whole step, the teacher's forward included.
* ``distiller.set_epoch`` / ``distiller.on_step_end`` are the hooks some methods need (DKD's warm-up, CRD's
  memory bank): call them where Lightning starts an epoch and ends a step.

The data here is torchvision's ``FakeData`` (random images, no download): put your own loaders in its place.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import FakeData

import ofakd


class DistillationModule(L.LightningModule):
    """Trains ``distiller`` (its student and branches); validation top-1 is the student's alone."""

    def __init__(self, distiller: ofakd.distill.Distiller, lr: float = 1e-3, weight_decay: float = 0.05) -> None:
        super().__init__()
        self.distiller = distiller
        self.lr, self.weight_decay = lr, weight_decay

    def on_train_epoch_start(self) -> None:
        self.distiller.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_index):
        images, targets = batch
        _, losses = self.distiller(images, targets)
        self.log_dict({f"train/{name}": value for name, value in losses.items()}, prog_bar=False)
        return sum(losses.values())

    def on_train_batch_end(self, outputs, batch, batch_index) -> None:
        self.distiller.on_step_end()

    def validation_step(self, batch, batch_index):
        images, targets = batch
        top1 = (self.distiller.student(images).argmax(dim=1) == targets).float().mean()
        self.log("val/top1", top1 * 100, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.distiller.trainable_parameters(), lr=self.lr, weight_decay=self.weight_decay)


def fake_loader(size: int, image_size: int, classes: int, batch_size: int, seed: int) -> DataLoader:
    data = FakeData(size, (3, image_size, image_size), classes, transforms.ToTensor(), random_offset=seed)
    return DataLoader(data, batch_size=batch_size, shuffle=seed == 0, drop_last=seed == 0)


def build(args: argparse.Namespace) -> tuple[DistillationModule, L.Trainer]:
    teacher = ofakd.create_model(args.teacher, num_classes=args.classes, pretrained=args.teacher_pretrained)
    student = ofakd.create_model(args.student, num_classes=args.classes)
    distiller = ofakd.create_distiller(args.method, teacher=teacher, student=student,
                                       input_size=(3, args.image_size, args.image_size),
                                       mean=(0.0,), std=(1.0,))  # ToTensor's pixels in [0, 1], not normalised
    trainer = L.Trainer(max_steps=args.steps, precision="bf16-mixed", accelerator=args.accelerator,
                        default_root_dir=args.out, logger=False, enable_progress_bar=False,
                        val_check_interval=args.steps, num_sanity_val_steps=0)
    return DistillationModule(distiller, lr=args.lr), trainer


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet18")
    parser.add_argument("--teacher-pretrained", action="store_true", help="its Hub weights (a tag: resnet18.a1_in1k)")
    parser.add_argument("--student", default="mobilenetv3_small_050")
    parser.add_argument("--method", default="ofa")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--out", default="lightning_runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> DistillationModule:
    args = parse(argv)
    module, trainer = build(args)
    train = fake_loader(args.batch_size * args.steps, args.image_size, args.classes, args.batch_size, seed=0)
    val = fake_loader(4 * args.batch_size, args.image_size, args.classes, args.batch_size, seed=1)
    trainer.fit(module, train, val)
    return module


if __name__ == "__main__":
    main()
