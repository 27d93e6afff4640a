"""``ofakd.fit`` under torchrun: each process records its share of the teacher cache, and the cached run replays
the live one bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests import REPO
from tests.launching import LAUNCH_TIMEOUT, finish, free_port, launch_report, torchrun

TORCHRUN_FITS = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.blobs import SETTINGS, Blobs, bf16_distiller
import ofakd

out = sys.argv[2]
ofakd.fit(bf16_distiller(), Blobs(64, 0), Blobs(16, 1), out_dir=out, name="live", **SETTINGS)
ofakd.fit(bf16_distiller(), Blobs(64, 0), Blobs(16, 1), out_dir=out, name="cached", teacher_cache=out + "/cache",
          **SETTINGS)
"""


@pytest.mark.slow
def test_fit_under_torchrun_records_each_rank_and_replays_the_live_run(tmp_path):
    script = tmp_path / "fits.py"
    script.write_text(TORCHRUN_FITS)
    code, out = finish(torchrun([str(REPO), str(tmp_path)], nproc=2, port=free_port(),
                                program=(str(script),)), timeout=2 * LAUNCH_TIMEOUT)
    assert code == 0, launch_report(out)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["steps_per_epoch"] == 2  # 64 images, 2 ranks x batch 16
    summary = json.loads((tmp_path / "cached" / "summary.json").read_text())
    assert summary["complete"] and summary["steps"] == 4
    live, cached = load_file(str(tmp_path / "live" / "best.safetensors")), load_file(
        str(tmp_path / "cached" / "best.safetensors"))
    assert live.keys() == cached.keys() and all(torch.equal(live[k], cached[k]) for k in live)
