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
    (["--crop-padding", "4"], "unknown option '--crop-padding' — did you mean '--augment.crop_padding'?"),
    (["--ema-decay", "0.9"], "unknown option '--ema-decay' — did you mean '--train.ema_decay'?"),
    (["--warmup", "3"], "unknown option '--warmup' — did you mean '--warmup-epochs'?"),
])
def test_no_prefix_guessing_and_did_you_mean_knows_dotted_fields(ofakd_cli, args, message):
    code, out, err = ofakd_cli("distill", "--config", "demo", *args, "--print-config")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_timm_model_and_data_spellings_are_aliases(ofakd_cli, tmp_path):
    cfg = resolved(ofakd_cli, "--model", "resnet18", "--initial-checkpoint", "s.pth", "--pretrained-path", "p.pth",
                   "--data-dir", tmp_path, "--dataset", "torch/cifar100", "--img-size", "48", "--mean", "0.5", "0.4",
                   "0.3", "--std", "0.2", "0.2", "0.2", "--scale", "0.5", "1", "--hflip", "0", "--aa", "rand-m9",
                   "--reprob", "0.25", "--crop-pct", "0.9", "--drop-path", "0.1", "--aug-repeats", "3",
                   "--sched-on-updates")
    student = cfg["student"]
    assert (student["name"], student["checkpoint"], student["pretrained"]) == ("resnet18", "s.pth", "p.pth")
    assert student["input_size"] == [3, 48, 48]  # the demo recipe's 3 channels, timm's square size
    assert student["mean"] == [0.5, 0.4, 0.3] and student["std"] == [0.2, 0.2, 0.2]
    assert student["kwargs"]["drop_path_rate"] == 0.1
    assert cfg["data"]["root"] == str(tmp_path) and cfg["data"]["name"] == "cifar100"
    augment = cfg["augment"]
    assert (augment["scale"], augment["hflip"], augment["auto_augment"], augment["reprob"], augment["crop_pct"],
            augment["repeated_aug"]) == ([0.5, 1.0], 0.0, "rand-m9", 0.25, 0.9, 3)
    assert cfg["train"]["sched_on_updates"] is True
    assert resolved(ofakd_cli, "--set", "student.input_size=[1,28,28]", "--img-size", "56")["student"][
        "input_size"] == [1, 56, 56]
    assert resolved(ofakd_cli, "--in-chans", "1", "--img-size", "28")["student"]["input_size"] == [1, 28, 28]
    no_size = resolved(ofakd_cli, "--set", "student.input_size=null", "--in-chans", "1")["student"]
    assert no_size["input_size"] is None and no_size["kwargs"]["in_chans"] == 1
    assert resolved(ofakd_cli, "--dataset", "")["data"]["name"] == "imagefolder"  # timm's default: ImageFolder
    code, _, err = ofakd_cli("distill", "--config", "demo", "--dataset", "hfds/beans", "--print-config")
    assert code == 2 and "timm data set 'hfds/beans' is not one ofakd reads" in err


def test_timm_distillation_flags_compute_what_timm_computes(ofakd_cli):
    cfg = resolved(ofakd_cli, "--kd-model-name", "resnet34", "--kd-distill-type", "logit", "--kd-loss-type", "kl",
                   "--kd-temperature", "4", "--task-loss-weight", "0.25")
    assert cfg["teacher"]["name"] == "resnet34" and cfg["teacher"]["pretrained"] is True  # timm loads its weights
    method = cfg["method"]
    # timm's complementary weights: only --task-loss-weight G given -> distillation weight 1 - G
    assert (method["name"], method["temperature"], method["gt_weight"], method["kd_weight"]) == ("kd", 4.0, 0.25, 0.75)
    both = resolved(ofakd_cli, "--kd-distill-type", "logit", "--distill-loss-weight", "2", "--task-loss-weight", "0.5")
    assert (both["method"]["gt_weight"], both["method"]["kd_weight"]) == (0.5, 2.0)  # independent weights, any order
    with_weights = resolved(ofakd_cli, "--kd-model-name", "resnet34", "--teacher-checkpoint", "t.pth")
    assert with_weights["teacher"]["checkpoint"] == "t.pth" and with_weights["teacher"]["pretrained"] is None
    code, _, err = ofakd_cli("distill", "--config", "demo", "--kd-distill-type", "feature", "--print-config")
    assert code == 2 and "'feature' distillation" in err and "--method fitnet, rkd, rsd or ofa" in err


def test_num_classes_is_checked_against_the_data_set(ofakd_cli):
    assert resolved(ofakd_cli, "--num-classes", "10")["data"]["name"] == "digits"
    code, out, err = ofakd_cli("distill", "--config", "demo", "--num-classes", "100", "--print-config")
    assert code == 2 and out == ""
    assert "--num-classes 100: data set digits has 10 classes" in err and "drop --num-classes" in err


@pytest.mark.parametrize("command", ["train", "distill"])
def test_a_misspelt_flag_is_never_corrected_to_an_unrelated_one(ofakd_cli, command):
    cases = {
        "--modl": "--model", "--data-dirr": "--data-dir", "--momentun": "--momentum",  # typos: corrected
        "--bn-momentum": None, "--vflip": None, "--checkpoint-hist": None,  # timm flags without an equivalent
        "--resume-opt": None, "--dataset-size": None,  # a word more than a known flag: another flag, not a typo
    }
    for flag, meant in cases.items():
        code, _, err = ofakd_cli(command, "--config", "demo", flag, "1", "--print-config")
        assert code == 2 and f"unknown option {flag!r}" in err
        if meant is None:
            assert "did you mean" not in err, err
        else:
            assert f"did you mean {meant!r}?" in err, err
    _, _, err = ofakd_cli(command, "--config", "demo", "--vflip", "0.5", "--print-config")
    assert "a flag of timm's train.py that has no equivalent here" in err
    from ofakd.cli import _subparser, build_parser
    from ofakd.commands.cli_args import TIMM_WITHOUT_EQUIVALENT

    known = _subparser(build_parser(), command)._option_string_actions
    assert not TIMM_WITHOUT_EQUIVALENT & set(known)  # a flag said to have no equivalent never has one
    code, out, _ = ofakd_cli(command, "--config", "demo", "--model", "resnet18", "--print-config")
    assert code == 0 and yaml.safe_load(out)["student"]["name"] == "resnet18"  # not "did you mean --model-ema"


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


def test_a_recipes_student_kwargs_that_do_not_fit_another_model_name_the_fix(ofakd_cli, tmp_path):
    code, _, err = ofakd_cli("train", "--config", "demo", "--model", "resnet18", "--out-dir", tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "model 'resnet18' does not take kwarg 'img_size'" in err
    assert "clear them with --set student.kwargs={}" in err
    assert not list(tmp_path.iterdir())  # nothing was started
