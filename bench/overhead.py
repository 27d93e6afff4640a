"""Engine overhead: ofakd's steady-state training step against a bare PyTorch loop of the same model, data,
optimizer and batch, interleaved round by round in one process, as a throughput ratio (target >= 0.95).

* ``ofakd``: the step ``ofakd train``/``distill`` runs: a :class:`~ofakd.engine.trainer.Trainer` built from
  the recipe, its own step context (guard, step records, schedule, EMA if any, metrics.jsonl and TensorBoard
  at log steps, progress callback), ``train_one_epoch`` over the batches below.
* ``bare``: ``zero_grad; loss(model(x), y).backward(); optimizer.step()`` on a copy of the same initial
  student with the same optimizer class and settings; for OFA the same losses written out by hand (teacher
  under ``inference_mode``, student stage features, the branches, ``ofa_loss``), no Distiller, no engine.

Both train on the same batches, taken from the run's own loader once beforehand, so data loading is
outside both (``bench/loader.py`` measures it). Each round runs ``--steps`` steps of each (which one goes
first alternates); the ratio is the median over rounds of bare time / ofakd time in the same round, so
drift in a shared machine's load cancels, printed with its quartiles and beside the same ratio of CPU
time (process time: what each loop computed, whoever else ran). A round of ofakd is one
``train_one_epoch`` call ending in a read of its step records: with 2-step rounds that is one read per 2
steps, five times what a run with ``log_every: 10`` does, so the ratio is if anything pessimistic. On a
GPU the last column counts the synchronizing CUDA calls of one more ofakd round
(``torch.cuda.set_sync_debug_mode``). Runs on CPU here and unchanged on a GPU (``--device cuda``); timings are measured, never asserted.

    python bench/overhead.py                  # the demo ViT (32 px, batch 64), ResNet18 (224 px, batch 8), OFA
    python bench/overhead.py --device cuda --rounds 10
"""

from __future__ import annotations  # noqa: I001 - ofakd first: it sets OMP_WAIT_POLICY before torch loads

import ofakd

import argparse
import copy
import inspect
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ofakd.config import load_config
from ofakd.distill.ofa import ofa_loss
from ofakd.distill.targets import one_hot_targets, soft_cross_entropy
from ofakd.engine.loop import soft_targets, train_one_epoch
from ofakd.engine.metrics_log import MetricsLog
from ofakd.engine.trainer import Trainer

DEMO_VIT = {"name": "vit_tiny_patch16_224", "kwargs": {"img_size": 32, "patch_size": 4, "depth": 4, "embed_dim": 64,
                                                       "num_heads": 2}, "input_size": [3, 32, 32]}


@dataclass
class Case:
    name: str
    batch: int
    overrides: list[tuple[str, object]] = field(default_factory=list)


CASES = [
    Case("demo ViT, 32 px, student only", 64, [("student", DEMO_VIT), ("method", {"name": "vanilla"}), ("teacher", {})]),
    Case("ResNet18, 224 px, student only", 8, [("student", {"name": "resnet18", "input_size": [3, 224, 224]}),
                                              ("method", {"name": "vanilla"}), ("teacher", {})]),
    Case("demo ViT, 32 px, OFA (live CNN teacher)", 64, [
        ("student", DEMO_VIT), ("method", {"name": "ofa", "ofa_weight": 0.1}), ("train.eval_teacher", False),
        ("teacher", {"name": "test_byobnet", "input_size": [3, 32, 32], "random_init": True})]),
    Case("demo ViT, 32 px, student only, nonfinite: skip", 64, [
        ("student", DEMO_VIT), ("method", {"name": "vanilla"}), ("teacher", {}), ("train.nonfinite", "skip")]),
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cuda_syncs(run, device: torch.device) -> int | None:
    """Synchronizing CUDA calls while ``run`` runs (``torch.cuda.set_sync_debug_mode``); None off a GPU."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def build_trainer(case: Case, folder: str, device: str, steps: int) -> Trainer:
    cfg = load_config("demo", [
        ("data.train_subset", case.batch * steps), ("data.val_subset", 16), ("train.batch_size", case.batch),
        ("train.device", device), ("run.out_dir", folder), ("run.name", "overhead"), *case.overrides,
    ])
    trainer = Trainer(cfg, progress=False, log=lambda _msg: None)
    trainer._prepare()
    trainer.setup.bundle.train_sampler.set_epoch(0)
    return trainer


class BareLoop:
    """The same student (a copy of its initial weights), optimizer class and settings, in a plain loop."""

    def __init__(self, trainer: Trainer) -> None:
        distiller = copy.deepcopy(trainer.setup.distiller)
        self.distiller, self.cfg = distiller, trainer.cfg
        self.teacher = trainer.setup.teacher  # shared: inference only
        self.smoothing = trainer.cfg.augment.smoothing
        kind = type(trainer.optimizer)
        accepted = inspect.signature(kind).parameters
        self.optimizer = kind(distiller.trainable_parameters(),
                              **{k: v for k, v in trainer.optimizer.defaults.items() if k in accepted})
        self.ofa = trainer.cfg.method.name == "ofa"

    def step(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.ofa:
            loss = self.ofa_loss(images, targets)
        else:
            loss = F.cross_entropy(self.distiller.student(images), targets, label_smoothing=self.smoothing)
        loss.backward()
        self.optimizer.step()

    def ofa_loss(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """gt + kd + ofa_weight · Σ_stages, as OFA defines them, written out."""
        d, opts = self.distiller, self.distiller.options
        with torch.inference_mode():
            z_t = self.teacher.model(self.teacher.view(images))  # its input: resized / renormalised, channels-last
        z_t = z_t.float().clone()
        student = d.student_tap(images)
        rows = soft_targets(targets, student.logits.shape[1], self.smoothing)
        mask = one_hot_targets(rows, student.logits.shape[1])
        loss = opts.gt_weight * soft_cross_entropy(student.logits, rows)
        loss = loss + opts.kd_weight * ofa_loss(student.logits, z_t, mask, d.eps[-1], opts.temperature)
        for k, (stage, position) in enumerate(zip(opts.stages, d.student_tap.positions)):
            branch = d.branches[f"stage{stage}"](student.features[position])
            loss = loss + opts.ofa_weight * ofa_loss(branch, z_t, mask, d.eps[k], opts.temperature)
        return loss


def bench_case(case: Case, *, steps: int, rounds: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        trainer = build_trainer(case, folder, device, steps)
        bare = BareLoop(trainer)
        batches = [[t.to(trainer.device) for t in b] for b in trainer.setup.bundle.train_loader][:steps]
        metrics = MetricsLog(trainer.folder.metrics, tensorboard_dir=trainer.folder.path)
        ctx, done = trainer._step_context(), [0]

        def ofakd_round() -> None:
            train_one_epoch(ctx, batches, epoch=1, start_step=done[0], on_log=lambda r: metrics.train(
                **{k: v for k, v in r.items() if k != "kind"}), on_step=lambda *a: None)
            done[0] += len(batches)

        def bare_round() -> None:
            for images, targets in batches:
                bare.step(images, targets)

        wall = {"ofakd": [], "bare": []}
        cpu = {"ofakd": [], "bare": []}
        loops = [("ofakd", ofakd_round), ("bare", bare_round)]
        for r in range(rounds + 1):
            for name, run in loops if r % 2 else loops[::-1]:  # alternate which goes first
                sync(trainer.device)
                start, start_cpu = time.perf_counter(), time.process_time()
                run()
                sync(trainer.device)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        syncs = cuda_syncs(ofakd_round, trainer.device)
        metrics.close()

    def ratios(seconds: dict) -> list[float]:  # bare time / ofakd time per round, the warm-up round dropped
        return [b / o for b, o in zip(seconds["bare"][1:], seconds["ofakd"][1:])]

    return {
        "case": case.name, "batch": case.batch, "optimizer": type(bare.optimizer).__name__,
        "ofakd_images_per_s": case.batch * steps / statistics.median(wall["ofakd"][1:]),
        "bare_images_per_s": case.batch * steps / statistics.median(wall["bare"][1:]),
        "ratio": statistics.median(ratios(wall)),
        "ratio_quartiles": statistics.quantiles(ratios(wall), n=4)[::2] if rounds > 1 else [ratios(wall)[0]] * 2,
        "cpu_ratio": statistics.median(ratios(cpu)),
        "cuda_syncs": syncs,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=2, help="steps of each loop per round")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--cases", type=int, nargs="*", help="indices into the case list (default: all)")
    args = parser.parse_args(argv)
    cases = [CASES[i] for i in args.cases] if args.cases else CASES
    rows = [bench_case(case, steps=args.steps, rounds=args.rounds, device=args.device) for case in cases]
    print(f"\n### Engine overhead ({args.device}, {torch.get_num_threads()} threads, {args.steps} steps x "
          f"{args.rounds} rounds, ofakd {ofakd.__version__})\n")
    print(f"| case | batch | optimizer | ofakd images/s | bare loop images/s | ofakd ÷ bare, wall (median; quartiles) "
          f"| ofakd ÷ bare, CPU time | CUDA syncs in {args.steps} ofakd steps |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        low, high = r["ratio_quartiles"]
        syncs = "—" if r["cuda_syncs"] is None else r["cuda_syncs"]
        print(f"| {r['case']} | {r['batch']} | {r['optimizer']} | {r['ofakd_images_per_s']:.1f} | "
              f"{r['bare_images_per_s']:.1f} | {r['ratio']:.3f} ({low:.2f}–{high:.2f}) | {r['cpu_ratio']:.3f} | {syncs} |")
    return rows


if __name__ == "__main__":
    main()
