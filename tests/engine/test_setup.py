"""One setup builder for a run from the command line and one of ``ofakd.fit``: the same steps, the parts taken
from the config (ConfigSource) or from what Python gave (GivenSource)."""

from __future__ import annotations

import ofakd
from ofakd.config import load_config
from ofakd.engine import fit
from ofakd.engine import trainer as trainer_module
from ofakd.engine.given_datasets import GivenSource
from ofakd.engine.setup import ConfigSource
from tests.blobs import SETTINGS, Blobs, distiller
from tests.conftest import tiny_overrides


def test_the_cli_and_ofakd_fit_build_their_runs_through_the_one_builder(tmp_path, monkeypatch):
    built = []
    real = trainer_module.build_setup

    def build_setup(cfg, device, dist, source=None):
        setup = real(cfg, device, dist, source)
        built.append((cfg.run.name, type(source or ConfigSource()).__name__, setup.distiller.method_name))
        return setup

    monkeypatch.setattr(trainer_module, "build_setup", build_setup)
    fit(load_config("demo", tiny_overrides(tmp_path, "cli", epochs=1, method="kd")),
        progress=False, tensorboard=False, log=lambda _m: None)
    ofakd.fit(distiller("kd"), Blobs(32, 0), Blobs(16, 1), out_dir=tmp_path, name="given", **{**SETTINGS, "epochs": 1})
    assert built == [("cli", ConfigSource.__name__, "kd"), ("given", GivenSource.__name__, "kd")]
