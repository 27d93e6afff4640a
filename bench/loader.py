"""Data loading against the training step: images/s of ofakd's training loader per worker process, on a
synthetic ImageFolder of JPEGs, beside the images/s of a training step on the same batches.

It writes ``--images`` JPEGs (smooth random content with noise, ``--image-size`` px square, 10 classes)
into a temporary ImageFolder and builds the training loader exactly as a run does (``run_data`` with a
recipe's augmentation: ``imagenet-cnn`` = random-resized crop to 224 + flip; ``imagenet-vit-mlp`` adds
RandAugment, random erasing and mixup/cutmix), then times ``--epochs`` passes with 0, 1, 2, ...
workers, the workers kept from epoch to epoch (what a run does) and restarted every epoch (what it did
before). Last it times a training step of ``--model`` (SGD, float32) on the same batch.

A device needs about (its step's images/s) / (images/s per worker) workers to keep up; on a GPU take the
step's images/s from ``bench/throughput.py --device cuda``. Timings are measured, never asserted.

    python bench/loader.py                     # 224 px JPEGs, imagenet-cnn augmentation, 0-2 workers
    python bench/loader.py --recipe imagenet-vit-mlp --image-size 400 --workers 0 1 2 4
"""

from __future__ import annotations  # noqa: I001 - ofakd first: it sets OMP_WAIT_POLICY before torch loads

import ofakd

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ofakd.config import load_config
from ofakd.data import run_data
from ofakd.models.info import InputSpec


def write_jpegs(root: Path, images: int, size: int, classes: int = 10) -> None:
    """``root/{train,val}/class_k/*.jpg``: smooth colour fields (8x8 noise upsampled) plus pixel noise, quality 90."""
    rng = np.random.default_rng(0)
    for split, count in (("train", images), ("val", classes)):
        for i in range(count):
            folder = root / split / f"class_{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
            pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-20, 21, (size, size, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)


def time_loader(cfg, *, epochs: int, persistent: bool) -> tuple[float, float]:
    """(images/s over ``epochs`` passes, seconds to the first batch of the last pass) of the run's train loader."""
    spec = InputSpec(input_size=(3, 224, 224), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    bundle = run_data(cfg, spec, world_size=1, rank=0, with_indices=False, persistent_workers=persistent)
    images, first = 0, 0.0
    start = time.perf_counter()
    for epoch in range(epochs):
        bundle.train_sampler.set_epoch(epoch)
        begin = time.perf_counter()
        for i, batch in enumerate(bundle.train_loader):
            if i == 0:
                first = time.perf_counter() - begin
            images += batch[0].shape[0]
    return images / (time.perf_counter() - start), first


def step_images_per_s(model_name: str, batch: int, steps: int = 3) -> float:
    """Training-step images/s of ``model_name`` at 224 px (forward, backward, SGD step) on this CPU."""
    model = ofakd.create_model(model_name, num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 10, (batch,))
    times = []
    for _ in range(steps + 1):  # the first one warms up
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times[1:]))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=224, help="side of the square JPEGs written")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipe", default="imagenet-cnn")
    parser.add_argument("--model", default="resnet18", help="the student whose step the loader must keep up with")
    parser.add_argument("--step-steps", type=int, default=3, help="timed training steps (0: skip the step)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_jpegs(Path(folder), args.images, args.image_size)
        for workers in args.workers:
            for persistent in (False, True) if workers else (False,):
                cfg = load_config(args.recipe, [("data.root", folder), ("data.workers", workers),
                                                ("train.batch_size", args.batch)])
                rate, first = time_loader(cfg, epochs=args.epochs, persistent=persistent)
                rows.append({"workers": workers, "persistent": persistent, "images_per_s": rate,
                             "per_worker": rate / max(workers, 1), "first_batch_s": first})
    step = step_images_per_s(args.model, args.batch, args.step_steps) if args.step_steps else None
    print(f"\n### Loader ({args.recipe}, {args.images} JPEGs of {args.image_size} px, batch {args.batch}, "
          f"{args.epochs} epochs, {torch.get_num_threads()} compute threads)\n")
    print("| workers | kept between epochs | images/s | images/s per worker | first batch of an epoch (s) |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        kept = "yes" if r["persistent"] else ("—" if r["workers"] == 0 else "no")
        print(f"| {r['workers']} | {kept} | {r['images_per_s']:.0f} | {r['per_worker']:.0f} | {r['first_batch_s']:.2f} |")
    if step:
        per_worker = max(r["per_worker"] for r in rows if r["workers"])  if any(r["workers"] for r in rows) else None
        print(f"\n{args.model} training step at 224 px, batch {args.batch}, on this CPU: {step:.1f} images/s"
              + (f"; workers to keep up: {step / per_worker:.2f}" if per_worker else ""))
    return rows


if __name__ == "__main__":
    main()
