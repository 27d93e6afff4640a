"""The data path against the model: end-to-end ``ofakd train`` images/s ÷ the bare training step's images/s.

For each case, side by side in one process with one thread (loading in the training process, no workers):

1. the bare step: the student alone (timm model, timm's AdamW as the engine builds it, label-smoothed
   cross-entropy) on one fixed batch already in memory — the most a data path could let training reach;
2. ``ofakd train`` with ``--data.loader per_image`` (the PIL transform per image; what every run did before
   the batched path) and with ``--data.loader batched``, one epoch on ``--images`` training images;
3. the bare step again after each run: each run's ratio is to the mean of the bare steps just before and after it
   (the machine is shared: what is measured side by side sees the same load), and ``--rounds`` rounds of this
   give medians.

A run's training images/s comes from its own ``metrics.jsonl``: the images of its logged windows (five an epoch)
after the first (warm-up) over their time — everything a training step waits for, the data path included, but not the
validation pass at the end of the epoch, which the table reports apart as the command's wall time.

Cases: the converged benchmark's three students on Fashion-MNIST at 1×28×28 (batch 128, its recipe: resize +
flip, label smoothing), and CIFAR-size 32-px RGB images (written in CIFAR-10's on-disk format: smooth random
colour fields, since no CIFAR copy is on this machine) for ResNet-18 (padded crop + flip, the classic CIFAR
recipe) and a small ViT (random-resized crop + flip + random erasing). Timings are measured, never asserted.

    python bench/data_path.py                       # all cases, 3 rounds -> bench-out/data_path/data_path.{json,md}
    python bench/data_path.py --cases vit-p7-d48-L4 --images 3200 --rounds 5
"""

from __future__ import annotations  # noqa: I001 - ofakd first: it sets OMP_WAIT_POLICY before torch loads

import ofakd

import argparse
import json
import pickle
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from timm.optim import create_optimizer_v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from converged import CNN_STUDENT, MLP_STUDENT, RECIPE, VIT_STUDENT  # noqa: E402
from pool import register_models  # noqa: E402

CIFAR_AUGMENT = {
    "resnet18": ["--augment.train_resize_only", "true", "--augment.crop_padding", "4", "--augment.hflip", "0.5"],
    "vit": ["--augment.train_resize_only", "false", "--augment.scale", "[0.35, 1.0]", "--augment.color_jitter", "0",
            "--augment.reprob", "0.25", "--augment.interpolation", "bicubic"],
}


@dataclass(frozen=True)
class Case:
    key: str
    model: str
    kwargs: dict
    input_size: tuple[int, int, int]
    data_args: list[str] = field(default_factory=list)
    recipe: str = RECIPE


def cases(cifar_root: str) -> list[Case]:
    fashion = [Case(m.key, m.name, m.kwargs, m.input_size) for m in (VIT_STUDENT, MLP_STUDENT, CNN_STUDENT)]
    cifar = ["--data", "cifar10", "--data.root", cifar_root, "--set", "student.mean=[0.4914, 0.4822, 0.4465]",
             "--set", "student.std=[0.247, 0.243, 0.261]"]
    vit = {"img_size": 32, "patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3}
    return fashion + [
        Case("cifar32-resnet18", "resnet18", {}, (3, 32, 32), cifar + CIFAR_AUGMENT["resnet18"]),
        Case("cifar32-vit-p4-d96-L6", "vit_tiny_patch16_224", vit, (3, 32, 32), cifar + CIFAR_AUGMENT["vit"]),
    ]


def write_cifar10(root: Path, train: int, test: int = 1000) -> None:
    """CIFAR-10's python layout under ``root/cifar-10-batches-py``: smooth random colour fields (4×4 noise upsampled)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def images(n: int) -> np.ndarray:
        coarse = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
        fine = np.stack([np.asarray(Image.fromarray(c).resize((32, 32), Image.BICUBIC)) for c in coarse]
                        or [np.zeros((32, 32, 3), np.uint8)])[:n]
        return fine.transpose(0, 3, 1, 2).reshape(n, 3 * 32 * 32)

    per_batch = -(-train // 5)
    for i in range(5):
        n = max(0, min(per_batch, train - i * per_batch))  # the last batches may be short or empty
        batch = {"data": images(n), "labels": rng.integers(0, 10, n).tolist()}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch))
    (folder / "test_batch").write_bytes(pickle.dumps({"data": images(test), "labels": rng.integers(0, 10, test).tolist()}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{k}" for k in range(10)]}))


def bare_step_images_per_s(case: Case, batch_size: int, steps: int = 30, warmup: int = 5) -> float:
    """Images/s of forward, backward and AdamW step (timm's, as the engine builds it) of the student alone on one
    fixed batch, over ``steps`` steps after ``warmup``."""
    torch.manual_seed(0)
    model = ofakd.create_model(case.model, num_classes=10, in_chans=case.input_size[0], **case.kwargs)
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)  # the engine's optimizer factory
    images, targets = torch.randn(batch_size, *case.input_size), torch.randint(0, 10, (batch_size,))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = loss_fn(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batch_size / statistics.fmean(times)


def train_images_per_s(case: Case, loader: str, out: Path, *, images: int, batch_size: int) -> dict:
    """One epoch of ``ofakd train`` on ``images`` training images with ``--data.loader loader``: its training
    images/s (logged windows after the first) and the command's wall time."""
    from ofakd.cli import main

    name = f"{case.key}-{loader}"
    argv = ["train", "--config", case.recipe, "--device", "cpu", "--model", case.model,
            "--set", f"student.kwargs={json.dumps(case.kwargs)}",
            "--set", f"student.input_size={json.dumps(list(case.input_size))}",
            *case.data_args, "--data.loader", loader, "--data.train_subset", str(images), "--data.val_subset", "1000",
            "--epochs", "1", "--train.batch_size", str(batch_size),
            "--train.log_every", str(max(1, images // batch_size // 5)),
            "--train.threads", "1", "--out-dir", str(out), "--name", name, "--overwrite"]
    start = time.perf_counter()
    code = main(argv)
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"ofakd {' '.join(argv)} exited {code}")
    records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if r.get("kind") == "train"]
    steps = np.diff([0] + [r["step"] for r in windows])[1:]  # the first window holds the warm-up: left out
    seconds = sum(s * batch_size / r["images_per_s"] for s, r in zip(steps, windows[1:]))
    return {"images_per_s": float(sum(steps) * batch_size / seconds), "wall_s": wall}


def measure(case: Case, args, out: Path) -> dict:
    """``args.rounds`` rounds of bare, per-image run, bare, batched run, bare: each run's ratio is to the mean of the
    bare steps beside it (the machine is shared: neighbours in time see the same load); medians over the rounds."""
    bare, runs = [bare_step_images_per_s(case, args.batch_size, args.steps)], {"per_image": [], "batched": []}
    ratios = {loader: [] for loader in runs}
    for _ in range(args.rounds):
        for loader in runs:
            run = train_images_per_s(case, loader, out / "runs", images=args.images, batch_size=args.batch_size)
            bare.append(bare_step_images_per_s(case, args.batch_size, args.steps))
            runs[loader].append(run)
            ratios[loader].append(run["images_per_s"] / ((bare[-2] + bare[-1]) / 2))
    row = {"case": case.key, "rounds": args.rounds, "bare_step": statistics.median(bare), "bare_steps": bare}
    for loader, measured in runs.items():
        row[f"{loader}_images_per_s"] = statistics.median(r["images_per_s"] for r in measured)
        row[f"{loader}_wall_s"] = statistics.median(r["wall_s"] for r in measured)
        row[f"ratio_{loader}"] = statistics.median(ratios[loader])
        row[f"ratios_{loader}"] = ratios[loader]
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", help="case keys (default: all)")
    parser.add_argument("--images", type=int, default=6400, help="training images per run (one epoch)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of bare step and the two runs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default="bench-out/data_path")
    parser.add_argument("--steps", type=int, default=30, help="timed bare steps (after 5 warm-up steps)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    register_models()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as cifar_root:
        write_cifar10(Path(cifar_root), train=args.images)
        for case in cases(cifar_root):
            if args.cases and case.key not in args.cases:
                continue
            row = measure(case, args, out)
            rows.append(row)
            print(f"{case.key}: bare {row['bare_step']:.0f} img/s, per-image {row['per_image_images_per_s']:.0f} "
                  f"({row['ratio_per_image']:.2f}), batched {row['batched_images_per_s']:.0f} "
                  f"({row['ratio_batched']:.2f})", flush=True)
    (out / "data_path.json").write_text(json.dumps({"images": args.images, "batch_size": args.batch_size,
                                                    "rounds": args.rounds, "torch": torch.__version__, "rows": rows},
                                                   indent=2))
    lines = ["| case | bare step (img/s) | per-image: train img/s | ÷ bare | batched: train img/s | ÷ bare | "
             "wall s per-image / batched |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['bare_step']:.0f} | {r['per_image_images_per_s']:.0f} | "
                     f"{r['ratio_per_image']:.2f} | {r['batched_images_per_s']:.0f} | {r['ratio_batched']:.2f} | "
                     f"{r['per_image_wall_s']:.1f} / {r['batched_wall_s']:.1f} |")
    (out / "data_path.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()
