"""Starting ``torchrun`` launches from a test: a free port, a clean environment, the launch, its report."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

LAUNCH_TIMEOUT = 240
"""Seconds a torchrun launch may take on a loaded 2-core machine (each process imports torch, timm, dynamo)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """This environment without any torchrun variables, one thread per process."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def torchrun(args: list[str], *, nproc: int, port: int, nnodes: int = 1, node_rank: int = 0,
             program: tuple[str, ...] = ("-m", "ofakd")) -> subprocess.Popen:
    """Start ``torchrun ... PROGRAM ARGS`` (``-m ofakd`` unless a script is given; a static rendezvous at
    127.0.0.1:port)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}",
           f"--node_rank={node_rank}", "--master_addr=127.0.0.1", f"--master_port={port}", *program, *args]
    return subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def launch_report(output: str, tail: int = 3000) -> str:
    """A failed launch's output for an assertion message: every rank's own error lines (printed before the
    launcher's summary, which the tail alone would show), then the tail."""
    errors = [line for line in output.splitlines() if re.match(r"\[rank\d+\]: [\w.]*(Error|Exception)\b", line)]
    return "\n".join(["errors by rank:", *errors, "...", output[-tail:]])


def finish(process: subprocess.Popen, timeout: float = LAUNCH_TIMEOUT) -> tuple[int, str]:
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        pytest.fail(f"no exit within {timeout}s:\n{out[-3000:]}")
    return process.returncode, out
