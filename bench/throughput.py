"""Training throughput of distillation against its floor, side by side in one process.

For each teacher -> student pair it times, interleaved round by round, one optimizer step of:

* ``student only``   the student on labels alone (vanilla): the reference step;
* ``KD``             Hinton KD with the live teacher;
* ``OFA live``       OFA-KD with the live teacher (every OFA term computed);
* ``OFA cache``      OFA-KD reading the teacher's logits from a teacher-output cache
                     (recorded here with ``ofakd.cache.record_cache`` over real digits views);
* ``OFA floor``      OFA-KD with the teacher's logits handed over for free: student forward and
                     backward plus branches, no teacher, no cache reads;
* ``teacher forward`` the live teacher's forward alone (inference mode), as the distillers run it.

A variant's ratio to the student-only step is the median over rounds of its time in a round over
the student-only time in the same round, so drift in machine load (other tenants of a shared
CPU) cancels between neighbours instead of landing on whichever variant ran during it.

It prints images/s, peak memory (CUDA: peak allocated; CPU: peak resident-set growth while the
variant ran), the ratio of each step to the student-only step beside the ratio of the FLOPs the
step performs (forward, backward and teacher forward, counted by ``FlopCounterMode``: where the
two agree, the step runs as fast as its arithmetic allows), and the branch parameters and forward
FLOPs as multiples of the student's. Runs on CPU here and on a GPU unchanged
(``--device cuda``); ``--amp bf16``, ``--channels-last`` and ``--compile`` apply to every variant
(FLOPs are counted on the eager step, before compiling). Timings are measured, never asserted.

    python bench/throughput.py            # paper pairs at 224 px, batch 8
    python bench/throughput.py --quick    # small models at 32 px (seconds)
    python bench/throughput.py --device cuda --batch 128 --amp bf16 --channels-last [--compile]
"""

from __future__ import annotations  # noqa: I001 - ofakd first: it sets OMP_WAIT_POLICY before torch loads

import ofakd

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ofakd.cache import TeacherCache, record_cache
from ofakd.config import load_config
from ofakd.models import ModelOutput, count_parameters, input_spec

FULL_PAIRS = [
    ("deit_tiny_patch16_224", {}, "resnet18", {}),
    ("resnet50", {}, "deit_tiny_patch16_224", {}),
]
QUICK_VIT = {"img_size": 32, "patch_size": 4, "depth": 4, "embed_dim": 64, "num_heads": 2}
QUICK_PAIRS = [
    ("vit_tiny_patch16_224", QUICK_VIT, "resnet18", {}),
    ("resnet18", {}, "vit_tiny_patch16_224", QUICK_VIT),
]


@dataclass
class Pair:
    teacher: str
    teacher_kwargs: dict
    student: str
    student_kwargs: dict
    size: int


@dataclass(frozen=True)
class StepOptions:
    """How every variant's step runs: autocast dtype (None: float32), channels-last, torch.compile backend."""

    amp: torch.dtype | None = None
    channels_last: bool = False
    compile: str | None = None


class PeakMemory:
    """Peak memory while a block runs: CUDA peak allocated, or CPU peak RSS growth (sampled)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = self.peak_rss = _rss()
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak_rss = max(self.peak_rss, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.peak_rss, _rss()) - self.base


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def record_teacher_cache(pair: Pair, batch: int, steps: int, directory: str, device: torch.device) -> TeacherCache:
    """Record the teacher over ``steps`` batches of real digits views at the student's input size."""
    cfg = load_config(
        "demo",
        [
            ("teacher.name", pair.teacher), ("teacher.kwargs", pair.teacher_kwargs),
            ("teacher.input_size", [3, pair.size, pair.size]),
            ("student.name", pair.student), ("student.kwargs", pair.student_kwargs),
            ("student.input_size", [3, pair.size, pair.size]),
            ("data.train_subset", batch * steps), ("data.val_subset", batch),
            ("train.batch_size", batch), ("train.epochs", 1), ("teacher.random_init", True),  # timing only
        ],
    )
    return record_cache(cfg, directory, device=device, log=lambda _msg: None)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer sees it finished (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(step, name: str) -> int:
    """FLOPs of one optimizer step of ``name``: forwards (teacher included) and backward."""
    with FlopCounterMode(display=False) as counter:
        step(name, 0)
    return counter.get_total_flops()


def forward_flops(fn, *args) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def build_distillers(pair: Pair, teacher: torch.nn.Module, num_classes: int, input_size: tuple) -> dict:
    """The variants' distillers, each with its own student (same architecture); "OFA cache" and "OFA floor"
    share one that is handed the teacher's logits."""

    def student():
        return ofakd.create_model(pair.student, num_classes=num_classes, **pair.student_kwargs)

    ofa = ofakd.create_distiller("ofa", teacher=None, student=student(), input_size=input_size,
                                 num_teacher_classes=num_classes, teacher_dim=teacher.num_features)
    spec = input_spec(student())  # the batches are normalised for the student, as a run's are
    live = dict(input_size=input_size, mean=spec.mean, std=spec.std)
    return {
        "student only": ofakd.create_distiller("vanilla", student=student(), input_size=input_size),
        "KD": ofakd.create_distiller("kd", teacher=teacher, student=student(), **live),
        "OFA live": ofakd.create_distiller("ofa", teacher=teacher, student=student(), **live),
        "OFA cache": ofa,
        "OFA floor": ofa,
    }


def bench_pair(pair: Pair, *, batch: int, steps: int, rounds: int, device: torch.device,
               options: StepOptions = StepOptions()) -> list[dict]:
    torch.manual_seed(0)
    num_classes = 10  # digits, for the recorded cache; the step cost barely depends on it
    teacher = ofakd.create_model(pair.teacher, num_classes=num_classes, **pair.teacher_kwargs).to(device)
    input_size = (3, pair.size, pair.size)
    layout = torch.channels_last if options.channels_last else torch.contiguous_format
    images = [torch.randn(batch, *input_size, device=device).contiguous(memory_format=layout) for _ in range(steps)]
    targets = [torch.randint(0, num_classes, (batch,), device=device) for _ in range(steps)]
    with torch.inference_mode():
        free_logits = [teacher(x).float() for x in images]

    distillers = build_distillers(pair, teacher, num_classes, input_size)
    ofa = distillers["OFA floor"]
    for d in distillers.values():
        d.to(device, memory_format=layout).train()
    calls = {name: (d.distill if "OFA " in name and name != "OFA live" else d) for name, d in distillers.items()}
    optimizers = {name: torch.optim.SGD(d.trainable_parameters(), lr=1e-4, momentum=0.9) for name, d in distillers.items()}

    with tempfile.TemporaryDirectory() as folder:
        cache = record_teacher_cache(pair, batch, steps, folder, device)

        def step(name: str, i: int) -> None:
            if name == "teacher forward":
                distillers["KD"].teacher(images[i])
                return
            optimizer = optimizers[name]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, options.amp) if options.amp else contextlib.nullcontext():
                if name == "OFA cache":
                    given = ModelOutput(cache.read(0, i).to(device, non_blocking=True))
                    _, losses = calls[name](images[i], targets[i], given)
                elif name == "OFA floor":
                    _, losses = calls[name](images[i], targets[i], ModelOutput(free_logits[i]))
                else:
                    _, losses = calls[name](images[i], targets[i])
            sum(losses.values()).backward()
            optimizer.step()

        variants = [*distillers, "teacher forward"]
        for name in variants:  # warm-up: allocator, oneDNN/cuDNN kernel choice
            step(name, 0)
        flops = {name: step_flops(step, name) for name in variants}
        if options.compile:  # timed compiled; the FLOPs above were counted eagerly (the same arithmetic)
            calls = {name: torch.compile(call, backend=options.compile) for name, call in calls.items()}
            for name in variants:
                step(name, 0)  # compiles
        seconds, memory = time_variants(step, variants, rounds=rounds, steps=steps, device=device)
    label = f"{pair.teacher} -> {pair.student}"
    base = seconds["student only"]
    rows = []
    for name in variants:
        median = statistics.median(seconds[name])
        rows.append({
            "pair": label,
            "variant": name,
            "step_s": median,
            "images_per_s": batch / median,
            "ratio": statistics.median(t / b for t, b in zip(seconds[name], base)),
            "flops_ratio": flops[name] / flops["student only"],
            "gflops_per_s": flops[name] / median / 1e9,
            "peak_mib": memory[name] / 2**20,
        })
    return [*rows, {"pair": label, **branch_cost(ofa, ofa.student, images[0])}]


def time_variants(step, variants: list[str], *, rounds: int, steps: int, device: torch.device
                  ) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Seconds per step of each variant in each round (the variants interleaved), and its peak memory."""
    seconds = {name: [] for name in variants}
    memory = dict.fromkeys(variants, 0)
    for _ in range(rounds):
        for name in variants:
            sync(device)
            with PeakMemory(device) as peak:
                start = time.perf_counter()
                for i in range(steps):
                    step(name, i)
                sync(device)
                seconds[name].append((time.perf_counter() - start) / steps)
            memory[name] = max(memory[name], peak.peak)
    return seconds, memory


def branch_cost(ofa, student, x: torch.Tensor) -> dict:
    """OFA's branch parameters and forward FLOPs (feature taps included) as multiples of the student's."""
    student_flops = forward_flops(student, x)
    tap_flops = forward_flops(ofa.student_tap, x)
    with torch.no_grad():
        features = ofa.student_tap(x).select(ofa.student_tap.positions)
    branch_flops = sum(forward_flops(ofa.branches[f"stage{s}"], f) for s, f in zip(ofa.options.stages, features))
    branch_flops += max(tap_flops - student_flops, 0)
    return {"branch_params_x": count_parameters(ofa.branches) / count_parameters(student),
            "branch_flops_x": branch_flops / student_flops}


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """The device's float32 matrix-multiply rate (best of ``repeats`` n x n products): the roof for GFLOP/s."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):  # the first one warms up
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def print_table(rows: list[dict], *, batch: int, size: int, device: torch.device, options: StepOptions) -> None:
    how = ", ".join(x for x in (f"autocast {options.amp}" if options.amp else "float32",
                                "channels-last" if options.channels_last else "",
                                f"compiled ({options.compile})" if options.compile else "") if x)
    print(f"\n### Throughput ({device.type}, {torch.get_num_threads()} threads, {size} px, batch {batch}, {how})\n")
    print("| pair | variant | images/s | step (s) | × student-only | step FLOPs × student-only | GFLOP/s "
          "| peak memory (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        if "variant" in row:
            print(f"| {row['pair']} | {row['variant']} | {row['images_per_s']:.1f} | {row['step_s']:.3f} | "
                  f"{row['ratio']:.2f} | {row['flops_ratio']:.2f} | {row['gflops_per_s']:.0f} | {row['peak_mib']:.0f} |")
    print(f"\nfloat32 2048² matrix multiply on this device: {matmul_gflops(device):.0f} GFLOP/s")
    print("\n| pair | OFA branch params × student | OFA branch FLOPs × student |")
    print("|---|---:|---:|")
    for row in rows:
        if "branch_params_x" in row:
            print(f"| {row['pair']} | {row['branch_params_x']:.2f} | {row['branch_flops_x']:.2f} |")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models at 32 px instead of the paper pairs at 224 px")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="steps per variant per round (default 2; quick 4)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 10; quick 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: ofakd's, see ofakd.threads)")
    parser.add_argument("--amp", choices=["none", "bf16"], default="none", help="autocast every step's forward")
    parser.add_argument("--channels-last", action="store_true", help="channels-last images and weights")
    parser.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                        help="torch.compile every variant's forward (default backend: inductor)")
    args = parser.parse_args(argv)
    options = StepOptions(torch.bfloat16 if args.amp == "bf16" else None, args.channels_last, args.compile)
    from ofakd.threads import apply_threads

    apply_threads(args.threads)
    device = torch.device(args.device)
    pairs, size = (QUICK_PAIRS, 32) if args.quick else (FULL_PAIRS, 224)
    steps = args.steps or (4 if args.quick else 2)
    rounds = args.rounds or (2 if args.quick else 10)
    rows = []
    for teacher, t_kwargs, student, s_kwargs in pairs:
        rows += bench_pair(Pair(teacher, t_kwargs, student, s_kwargs, size), batch=args.batch, steps=steps,
                           rounds=rounds, device=device, options=options)
    print_table(rows, batch=args.batch, size=size, device=device, options=options)
    return rows


if __name__ == "__main__":
    main()
