"""Seeds and the exact state of every random generator, as tensors and lists (``weights_only`` safe).

Each epoch starts from generators seeded by (data seed, epoch, rank), so the data order,
augmentation, mixup and dropout of epoch e do not depend on what ran before; the full states
are also saved in ``last.pt`` and restored on resume.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np
import torch


def epoch_seed(data_seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed 32-bit seed for (data seed, epoch, rank)."""
    return int(np.random.SeedSequence([data_seed % 2**32, epoch, rank]).generate_state(1)[0])


def capture_rng(generators: Iterable[torch.Generator] = ()) -> dict:
    """Every generator's state: python, numpy, torch CPU, CUDA (if any), and ``generators``."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = {
        "python": {"version": version, "state": list(state), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() for g in generators],
    }
    return out


def restore_rng(state: dict, generators: Iterable[torch.Generator] = ()) -> None:
    """Put back what :func:`capture_rng` saved."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for generator, saved in zip(list(generators), state.get("generators", [])):
        generator.set_state(saved)


def loader_generators(loader) -> list[torch.Generator]:
    """The torch generators a DataLoader and its sampler own (their states belong in a checkpoint)."""
    found = []
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        generator = getattr(obj, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found
