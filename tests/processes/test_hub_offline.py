"""A pretrained teacher that is not in the Hugging Face Hub cache, offline: ``ofakd distill`` in a fresh process
exits 2 with one line naming the tag, the cache and the download (see tests/models/test_hub.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.hub_files import TAG, TAG_REPO


def test_offline_and_not_cached_exits_2_naming_the_tag_the_cache_and_the_download(tmp_path):
    """The real environment variables, read by a fresh process: HF_HOME chooses the cache, HF_HUB_OFFLINE=1
    stops any download."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "ofakd", "distill", "--config", "demo", "--out-dir", str(tmp_path / "runs"),
         "--teacher", TAG, "--teacher-pretrained", "--method", "kd"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for words in (f"'{TAG}'", f"Hub repo {TAG_REPO}", str(tmp_path / "hf" / "hub"), "HF_HUB_OFFLINE is set",
                  f"`hf download {TAG_REPO}`", "local weights file"):
        assert words in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()  # nothing was started
