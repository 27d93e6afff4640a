"""What one training step of each method costs on a pair of the converged benchmark (``bench/converged.py``):
the models at their sizes (randomly initialised, 1x28x28), a batch, AdamW, the teacher live; the median of
``--steps`` steps after two warm-up steps, methods one after another in one process. Measured, never asserted.

    python bench/method_step.py                          # PAT, OFA and KD on vit->cnn, batch 128, one thread
    python bench/method_step.py --pair cnn->vit --methods ofa dist kd --threads 2
"""

from __future__ import annotations  # noqa: I001 - ofakd first: it sets OMP_WAIT_POLICY before torch loads

import ofakd

import argparse
import statistics
import time

import torch

from converged import MEAN_STD, PAIRS, TEACHERS, Model

CLASSES = 10


def build(model: Model) -> torch.nn.Module:
    return ofakd.create_model(model.name, num_classes=CLASSES, in_chans=model.input_size[0], **model.kwargs)


def step_seconds(method: str, pair: str, batch: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` training steps (forward, backward, optimizer) after two warm-up steps."""
    teacher_key, student_model = PAIRS[pair]
    torch.manual_seed(0)
    distiller = ofakd.create_distiller(method, teacher=build(TEACHERS[teacher_key].model), student=build(student_model),
                                       mean=MEAN_STD["mean"], std=MEAN_STD["std"])
    optimizer = torch.optim.AdamW(list(distiller.trainable_parameters()), lr=1e-3)
    images, targets = torch.randn(batch, *student_model.input_size), torch.randint(0, CLASSES, (batch,))
    seconds = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        _, losses = distiller(images, targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        distiller.on_step_end()
        seconds.append(time.perf_counter() - start)
    return seconds[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="vit->cnn", choices=sorted(PAIRS))
    parser.add_argument("--methods", nargs="+", default=["pat", "ofa", "kd"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.pair}, batch {args.batch}, {args.threads} thread(s): median of {args.steps} steps")
    for method in args.methods:
        seconds = step_seconds(method, args.pair, args.batch, args.steps)
        print(f"  {method:8s} {statistics.median(seconds):.3f} s  (each: {', '.join(f'{s:.3f}' for s in seconds)})",
              flush=True)


if __name__ == "__main__":
    main()
