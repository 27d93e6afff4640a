"""CPU threads on a shared machine: the demo teacher's training images/s with torch's thread defaults and with
ofakd's, each alone and beside a competing busy process, interleaved round by round in one run.

* ``torch defaults``: what a run got before ofakd chose its threads: torch's thread count (one per core it
  sees) and OpenMP's default wait policy (waiting threads spin for a while before they sleep); the child
  imports torch before ofakd, so ofakd cannot set the policy, and passes torch's count as train.threads;
* ``ofakd defaults``: ``import ofakd`` first (``OMP_WAIT_POLICY=PASSIVE``) and train.threads unset (the CPUs
  the process may use, minus data workers; see ``ofakd.threads``).

Each measurement is a fresh process training the demo's teacher (``test_byobnet`` on digits at 32 px,
batch 32, ``--images`` images, one epoch) and reporting its training images/s; the competitor is
``python -c "while True: pass"``, started before and killed after. ``OMP_NUM_THREADS`` and
``OMP_WAIT_POLICY`` are removed from the children's environment. Timings are measured, never asserted.

    python bench/threads.py                 # 640 images, 3 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, sys
if sys.argv[1] == "torch":
    import torch  # first: OpenMP starts with its default wait policy, torch with its default thread count
    threads = torch.get_num_threads()
import ofakd
from ofakd.config import load_config
from ofakd.engine import fit
import torch

summary = fit(load_config("demo", [
    ("student", {"name": "test_byobnet", "input_size": [3, 32, 32]}), ("teacher", {}), ("method", {"name": "vanilla"}),
    ("data.train_subset", int(sys.argv[3])), ("data.val_subset", 32), ("train.epochs", 1), ("train.device", "cpu"),
    ("train.threads", threads if sys.argv[1] == "torch" else None), ("run.out_dir", sys.argv[2]), ("run.name", "t"),
]), overwrite=True, progress=False, tensorboard=False, log=lambda _m: None)
import os
print("RESULT", json.dumps({"images_per_s": summary["images_per_s"], "threads": torch.get_num_threads(),
                            "policy": os.environ.get("OMP_WAIT_POLICY")}))
"""
SETTINGS = {"torch defaults": "torch", "ofakd defaults": "ofakd"}


def measure(setting: str, busy: bool, images: int, folder: str) -> dict:
    """One child process's training images/s (with a busy competitor when ``busy``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, SETTINGS[setting], folder, str(images)], env=env,
                              capture_output=True, text=True, check=True)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    conditions = [(setting, busy) for setting in SETTINGS for busy in (False, True)]
    results: dict[tuple[str, bool], list[dict]] = {c: [] for c in conditions}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for setting, busy in conditions:
                results[setting, busy].append(measure(setting, busy, args.images, folder))
    print(f"\n### Threads on a shared machine ({os.cpu_count()} CPUs, load average at the start {load:.1f}, at the "
          f"end {os.getloadavg()[0]:.1f}; demo teacher, {args.images} images, median of {args.rounds} rounds)\n")
    print("| setting | threads | wait policy | images/s alone | images/s beside a busy process | slowdown |")
    print("|---|---:|---|---:|---:|---:|")
    table = {}
    for setting in SETTINGS:
        alone = statistics.median(r["images_per_s"] for r in results[setting, False])
        busy = statistics.median(r["images_per_s"] for r in results[setting, True])
        first = results[setting, False][0]
        table[setting] = {"alone": alone, "busy": busy, "threads": first["threads"], "policy": first["policy"]}
        print(f"| {setting} | {first['threads']} | {first['policy'] or 'unset (spin, then sleep)'} | {alone:.0f} | "
              f"{busy:.0f} | {alone / busy:.1f}× |")
    return table


if __name__ == "__main__":
    main()
