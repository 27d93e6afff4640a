"""How flags are spelled: timm's aliases, hyphens or underscores, no abbreviations, did-you-mean, --version,
and a ``--help`` that answers without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from ofakd import __version__


def resolved(ofakd_cli, *args) -> dict:
    code, out, err = ofakd_cli("distill", "--config", "demo", *args, "--print-config")
    assert code == 0, err
    return yaml.safe_load(out)


def test_timm_spellings_set_the_same_keys(ofakd_cli, tmp_path):
    cfg = resolved(ofakd_cli, "--lr", "0.1", "-b", "64", "--opt", "SGD", "--weight-decay", "1e-4", "--epochs", "3",
                   "--model-ema", "--amp", "--output", tmp_path, "--experiment", "sweep-1")
    train = cfg["train"]
    assert (train["lr"], train["batch_size"], train["optimizer"], train["weight_decay"], train["epochs"]) == (
        0.1, 64, "sgd", 1e-4, 3)
    assert train["ema_decay"] == 0.9998 and train["amp"] == "fp16"
    assert cfg["run"] == {"name": "sweep-1", "out_dir": str(tmp_path)}


def test_model_ema_keeps_a_chosen_decay_and_amp_dtype_wins_in_any_order(ofakd_cli):
    assert resolved(ofakd_cli, "--model-ema-decay", "0.99", "--model-ema")["train"]["ema_decay"] == 0.99
    assert resolved(ofakd_cli, "--set", "train.ema_decay=0.95", "--model-ema")["train"]["ema_decay"] == 0.95
    assert resolved(ofakd_cli, "--amp-dtype", "bfloat16", "--amp")["train"]["amp"] == "bf16"
    assert resolved(ofakd_cli, "--amp", "--amp-dtype", "bfloat16")["train"]["amp"] == "bf16"


def test_hyphens_and_underscores_are_one_flag(ofakd_cli):
    cfg = resolved(ofakd_cli, "--train.batch-size", "16", "--train.warmup_epochs", "0", "--warmup_lr", "1e-4",
                   "--method.ofa-weight", "0.2", "--augment.color-jitter=0.1")
    assert cfg["train"]["batch_size"] == 16 and cfg["train"]["warmup_epochs"] == 0
    assert cfg["train"]["warmup_lr"] == 1e-4 and cfg["augment"]["color_jitter"] == 0.1
    assert cfg["method"]["ofa_weight"] == 0.2
    code, out, _ = ofakd_cli("train", "--config", "demo", "--print_config")
    assert code == 0 and yaml.safe_load(out)["method"]["name"] == "vanilla"


@pytest.mark.parametrize(("args", "message"), [
    (["--train.batch", "64"], "unknown option '--train.batch' — did you mean '--train.batch_size'?"),
    (["--print-conf"], "unknown option '--print-conf' — did you mean '--print-config'?"),
    (["--reprob", "0.25"], "unknown option '--reprob' — did you mean '--augment.reprob'?"),
    (["--ema-decay", "0.9"], "unknown option '--ema-decay' — did you mean '--train.ema_decay'?"),
    (["--warmup", "3"], "unknown option '--warmup' — did you mean '--warmup-epochs'?"),
])
def test_no_prefix_guessing_and_did_you_mean_knows_dotted_fields(ofakd_cli, args, message):
    code, out, err = ofakd_cli("distill", "--config", "demo", *args, "--print-config")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_train_has_no_method_options(ofakd_cli):
    code, _, err = ofakd_cli("train", "--config", "demo", "--method.eps", "[1.5]", "--print-config")
    assert code == 2 and "unknown option '--method.eps'" in err and "did you mean" not in err


def test_version(ofakd_cli):
    code, out, _ = ofakd_cli("--version")
    assert code == 0 and out.strip() == f"ofakd {__version__}"


HELP_DRIVER = """
import sys
from ofakd.cli import main
for argv in (["--help"], ["--version"], *[[c, "--help"] for c in sys.argv[1:]]):
    try:
        main(argv)
    except SystemExit as exit_:
        assert exit_.code == 0, (argv, exit_.code)
heavy = sorted(m for m in ("torch", "timm", "torchvision", "matplotlib", "optuna") if m in sys.modules)
print("HEAVY:", ",".join(heavy))
"""


def test_help_answers_without_importing_torch():
    """`ofakd --help` and every `ofakd COMMAND --help` print without importing torch, timm or matplotlib
    (which cost seconds): the commands import them when they run."""
    commands = ["train", "distill", "eval", "demo", "cka", "report", "export", "methods", "cache", "tune"]
    done = subprocess.run([sys.executable, "-c", HELP_DRIVER, *commands], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: ofakd train" in done.stdout and "--method.OPTION" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "HEAVY:"


def test_another_method_on_a_recipe_drops_the_recipe_method_options_with_a_note(ofakd_cli):
    code, out, err = ofakd_cli("distill", "--config", "paper-cifar100-swin_t-resnet18", "--method", "kd",
                               "--method.temperature", "4", "--print-config")
    assert code == 0, err
    method = yaml.safe_load(out)["method"]
    assert method["name"] == "kd" and method["temperature"] == 4.0 and "eps" not in method
    assert "note: method kd replaces the recipe's ofa" in err and "(eps, ofa_weight) are dropped" in err
    code, out, err = ofakd_cli("distill", "--config", "paper-cifar100-swin_t-resnet18", "--print-config")
    assert code == 0 and yaml.safe_load(out)["method"]["ofa_weight"] == 0.1 and "note:" not in err
