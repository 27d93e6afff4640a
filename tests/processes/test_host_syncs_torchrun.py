"""The training step never waits on the device under torchrun either: host syncs and collectives counted over 20
steady-state steps of two processes, and ``train.nonfinite: skip`` skipping alike on both (see
tests/engine/test_host_syncs.py for one process)."""

from __future__ import annotations

import json

import pytest

from tests import REPO
from tests.launching import finish, free_port, launch_report, torchrun
from tests.sync_counting import COLLECTIVES

SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import torch
from tests.sync_counting import count_syncs, tiny_trainer
from ofakd.engine.launch import distributed
from ofakd.engine.loop import train_one_epoch

with distributed("cpu") as dist:
    trainer = tiny_trainer(Path(sys.argv[2]), dist=dist)
    calls, records = count_syncs(trainer)
    # then nonfinite: skip, rank 1 alone seeing an inf loss whose gradients are finite (a constant added to gt)
    trainer.numerics.policy, trainer.numerics.max_skipped = "skip", 5
    forward, seen = trainer.setup.distiller.forward, []

    def inf_on_rank_1(*args, **kwargs):
        logits, losses = forward(*args, **kwargs)
        seen.append(1)
        if dist.rank == 1 and len(seen) == 2:
            losses["gt"] = losses["gt"] + float("inf")
        return logits, losses

    trainer.setup.distiller.forward = inf_on_rank_1
    batches = list(trainer.setup.bundle.train_loader)[:3]
    result = train_one_epoch(trainer._step_context(), batches, epoch=2, start_step=32, on_log=lambda r: None)
    weights = torch.cat([p.detach().flatten() for p in trainer.setup.distiller.parameters()])
    both = [torch.zeros_like(weights) for _ in range(2)]
    torch.distributed.all_gather(both, weights)
    Path(sys.argv[2], f"rank{dist.rank}.json").write_text(json.dumps({
        "rank": dist.rank, "world": dist.world_size, "calls": calls, "steps": [r["step"] for r in records],
        "skipped": result.skipped, "same_weights": torch.equal(*both)}))
"""


@pytest.mark.slow
def test_torchrun_syncs_and_all_reduces_once_per_log_step_and_skips_alike(tmp_path):
    script = tmp_path / "count.py"
    script.write_text(SCRIPT)
    code, out = finish(torchrun([str(REPO), str(tmp_path)], nproc=2, port=free_port(),
                                program=(str(script),)))
    assert code == 0, launch_report(out)
    results = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(r["rank"] for r in results) == [0, 1] and {r["world"] for r in results} == {2}
    for r in results:  # the 20 steps hold two reads, each one all-reduce of the step records and one host sync
        collectives = [c for c in r["calls"] if c in COLLECTIVES]
        assert collectives == ["all_reduce", "all_reduce"], r
        assert len(r["calls"]) - len(collectives) <= 2, r
        assert r["steps"] == [10, 20, 30, 32]
        assert r["skipped"] == 1 and r["same_weights"], r  # both processes skipped step 34, so they stay equal
