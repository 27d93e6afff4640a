"""``ofakd train / distill / eval / demo`` end to end on tiny data the tests make or ship with scikit-learn."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import TINY_CNN, tiny_cli_args, write_cifar100, write_imagefolder

CNN_ARGS = ["--model", TINY_CNN, "--set", "student.kwargs={}"]  # the demo recipe's student kwargs are a ViT's


@pytest.mark.parametrize(("command", "expected"), [
    ("train", ["--model", "--pretrained", "--config", "--set", "--resume", "--stop-after-epochs", "--device",
               "--train.lr", "--data.root", "--augment.mixup", "examples:"]),
    ("distill", ["--teacher", "--teacher-checkpoint", "--teacher-run", "--student", "--method", "--method.eps",
                 "--method.ofa_weight", "--train.ema_decay", "--resume", "--overwrite", "examples:"]),
    ("eval", ["TARGET", "--split", "--weights", "--model", "--json", "--data.root", "--device"]),
    ("demo", ["--out", "--quick", "--device"]),
])
def test_help_lists_every_option(ofakd_cli, command, expected):
    code, out, _ = ofakd_cli(command, "--help")
    assert code == 0
    for flag in expected:
        assert flag in out, f"{command} --help lacks {flag}"


def test_overrides_apply_in_command_line_order(ofakd_cli):
    code, out, _ = ofakd_cli("distill", "--config", "demo", "--train.lr", "0.1", "--set", "train.lr=0.2",
                             "--method.eps", "[1.5]", "--print-config")
    assert code == 0
    cfg = yaml.safe_load(out)
    assert cfg["train"]["lr"] == 0.2 and cfg["method"]["eps"] == [1.5]
    code, out, _ = ofakd_cli("distill", "--config", "demo", "--set", "train.lr=0.2", "--train.lr", "0.1", "--print-config")
    assert yaml.safe_load(out)["train"]["lr"] == 0.1


def test_a_teacher_without_weights_is_an_error_unless_asked_for(ofakd_cli, tmp_path):
    """No checkpoint, pretrained weights or --teacher-run: distilling (or recording a cache) from a random teacher is
    refused with status 2 before any run folder is made; --teacher-random-init asks for it, and the run says so."""
    code, _, err = ofakd_cli("distill", *tiny_cli_args(tmp_path), "--method", "kd", "--name", "refused")
    assert code == 2 and "teacher test_byobnet has no weights" in err and "--teacher-random-init" in err
    assert not (tmp_path / "refused").exists()
    code, _, err = ofakd_cli("cache", "record", "--config", "demo", "--student.kwargs", '{"img_size": 16}',
                             "--student.input_size", "[3, 16, 16]", "--out", tmp_path / "cache")
    assert code == 2 and "--teacher-random-init" in err and not (tmp_path / "cache").exists()
    code, out, err = ofakd_cli("distill", *tiny_cli_args(tmp_path), "--method", "kd", "--teacher-random-init",
                               "--train.eval_teacher", "false", "--name", "asked")
    assert code == 0, err
    assert "note: teacher test_byobnet is randomly initialised, as teacher.random_init asks" in out + err
    assert yaml.safe_load((tmp_path / "asked" / "config.yaml").read_text())["teacher"]["random_init"] is True


def test_train_forces_labels_only(ofakd_cli):
    code, out, _ = ofakd_cli("train", "--config", "demo", "--print-config")
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["method"] == {"name": "vanilla", "gt_weight": 1.0, "gt_loss": "ce"}
    assert cfg["teacher"]["name"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "train.lrr=0.1"], "unknown key 'train.lrr' — did you mean 'train.lr'?"),
    (["--train.epochs", "ten"], "config: train.epochs: expected an integer, got 'ten'"),
    (["--config", "cifar-cn"], "unknown recipe 'cifar-cn' — did you mean 'cifar-cnn'?"),
    (["--method.eps", "[0]"], "method.eps"),
])
def test_config_errors_are_one_line(ofakd_cli, tmp_path, args, message):
    code, _, err = ofakd_cli("distill", "--config", "demo", "--out-dir", tmp_path, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_malformed_set_is_a_usage_error(ofakd_cli):
    code, _, err = ofakd_cli("train", "--set", "train.lr")
    assert code == 2 and "must look like KEY=VALUE" in err and "Traceback" not in err


def test_missing_data_folder_is_a_clear_error(ofakd_cli, tmp_path):
    missing = tmp_path / "no-such-folder"
    code, _, err = ofakd_cli("train", *tiny_cli_args(tmp_path), *CNN_ARGS, "--data", "imagefolder",
                             "--data.root", missing)
    assert code == 2 and str(missing) in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no half-made run folder left behind


def test_train_distill_eval_chain(ofakd_cli, tmp_path):
    """Train a CNN teacher (interrupted and resumed), distil a ViT from it with OFA, evaluate the result."""
    tiny = tiny_cli_args(tmp_path, epochs=2)
    code, out, err = ofakd_cli("train", *tiny, *CNN_ARGS, "--name", "teacher", "--stop-after-epochs", "1")
    assert code == 0, err
    assert "stopped after epoch 1/2" in out
    code, _, err = ofakd_cli("train", "--resume", tmp_path / "teacher", "--set", "train.lr=1")
    assert code == 2 and "cannot change" in err  # resuming keeps the recipe
    code, out, err = ofakd_cli("train", "--resume", tmp_path / "teacher")
    assert code == 0, err
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ") and "val top1" in line]
    assert len(epoch_lines) == 1 and epoch_lines[0].startswith("epoch 2/2  loss ")  # one line at the epoch's end
    step_lines = [line for line in out.splitlines() if line.startswith("epoch 2/2 step ")]
    assert step_lines and all("(gt " in line and " eta " in line for line in step_lines)  # off a terminal: plain lines
    teacher = json.loads((tmp_path / "teacher" / "summary.json").read_text())
    assert teacher["complete"] and teacher["epochs_done"] == 2 and teacher["method"] == "vanilla"
    assert teacher["teacher"] is None and teacher["student"] == TINY_CNN

    code, out, err = ofakd_cli("distill", *tiny_cli_args(tmp_path, epochs=1), "--teacher-run", tmp_path / "teacher",
                               "--method", "ofa", "--method.ofa_weight", "0.1", "--name", "student")
    assert code == 0, err
    summary = json.loads((tmp_path / "student" / "summary.json").read_text())
    assert (summary["method"], summary["teacher"], summary["student"]) == ("ofa", TINY_CNN, "vit_tiny_patch16_224")
    assert summary["method_options"]["ofa_weight"] == 0.1 and summary["method_options"]["eps"] == [1.0]
    assert summary["branch_params"] > 0
    recorded = yaml.safe_load((tmp_path / "student" / "config.yaml").read_text())["method"]
    assert recorded == {"name": "ofa", **summary["method_options"]}  # every option, defaults included
    # the teacher sees the ViT's batch (mean/std 0.5) re-normalised to its own mean/std: same accuracy as
    # its own run measured on its own input (one image of slack for float ties)
    assert abs(summary["teacher_top1"] - teacher["best_top1"]) <= 100 / 32 + 1e-6

    code, out, err = ofakd_cli("eval", tmp_path / "student", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["count"] == 32 and result["split"] == "val"
    assert "note: evaluated the run's 32-image val subset" in err  # a run folder: its own (sub)set, said so
    assert result["top1"] == pytest.approx(summary["best_top1"]) and result["top5"] == pytest.approx(summary["best_top5"])
    # per-class accuracies weighted by their counts give the overall top-1; images/s is measured
    per_class = [a * n / 100 for a, n in zip(result["per_class_accuracy"], result["per_class_count"]) if n]
    assert sum(result["per_class_count"]) == 32 and len(result["class_names"]) == 10
    assert 100 * sum(per_class) / 32 == pytest.approx(result["top1"]) and result["images_per_s"] > 0
    code, out, err = ofakd_cli("export", tmp_path / "student", "--format", "timm", "--out", tmp_path / "export")
    assert code == 0, err
    code, out, err = ofakd_cli("eval", tmp_path / "export", "--data.name", "digits", "--data.val_subset", "32", "--json")
    assert code == 0, err
    assert json.loads(out)["top1"] == pytest.approx(result["top1"])
    code, out, err = ofakd_cli("eval", tmp_path / "export", "--json")  # an export: the whole val split by default
    assert code == 0 and json.loads(out)["count"] == 359 and json.loads(out)["dataset"] == "digits"
    code, out, _ = ofakd_cli("eval", tmp_path / "student" / "best.safetensors", "--split", "train", "--json")
    assert code == 0 and json.loads(out)["count"] == 64

    code, _, err = ofakd_cli("distill", *tiny_cli_args(tmp_path), "--teacher-run", tmp_path / "teacher",
                             "--name", "student")
    assert code == 2 and "already exists" in err and "--resume" in err


def test_cifar100_pickles(ofakd_cli, tmp_path):
    root = write_cifar100(tmp_path / "cifar")
    code, out, err = ofakd_cli("train", *tiny_cli_args(tmp_path), *CNN_ARGS, "--data", "cifar100",
                               "--data.root", root, "--data.train_subset", "null", "--data.val_subset", "null",
                               "--train.batch_size", "8", "--name", "c100")
    assert code == 0, err
    summary = json.loads((tmp_path / "c100" / "summary.json").read_text())
    assert (summary["dataset"], summary["num_classes"], summary["train_images"], summary["val_images"]) == (
        "cifar100", 100, 40, 20
    )


def test_imagefolder_distill_vanilla(ofakd_cli, tmp_path):
    root = write_imagefolder(tmp_path / "images")
    code, out, err = ofakd_cli("distill", *tiny_cli_args(tmp_path, epochs=2), "--method", "vanilla", "--data",
                               "imagefolder", "--data.root", root, "--data.train_subset", "null",
                               "--data.val_subset", "null", "--train.batch_size", "12", "--name", "folder")
    assert code == 0, err
    summary = json.loads((tmp_path / "folder" / "summary.json").read_text())
    assert (summary["num_classes"], summary["train_images"], summary["val_images"]) == (3, 36, 12)
    assert summary["teacher"] is None  # vanilla uses no teacher
    from ofakd.run_folder import read_weights_metadata

    assert read_weights_metadata(tmp_path / "folder" / "best.safetensors")["ofakd_class_names"] == ["cat", "dog", "fox"]


@pytest.mark.slow
def test_demo_quick(ofakd_cli, tmp_path):
    code, out, err = ofakd_cli("demo", "--quick", "--student-epochs", "2", "--out", tmp_path / "demo", "--device", "cpu")
    assert code == 0, err
    for row in ("teacher", "student (vanilla)", "student (kd)", "student (ofa)"):
        assert row in out
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["method"] for r in results] == ["-", "vanilla", "kd", "ofa"]
    assert all(0.0 <= r["top1"] <= 100.0 for r in results)
    png = (tmp_path / "demo" / "accuracy.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    for run in ("teacher", "student-vanilla", "student-kd", "student-ofa"):
        assert (tmp_path / "demo" / run / "summary.json").is_file()

    # a stopped demo continues with --resume: finished parts are kept as they are, a stopped one resumes
    from ofakd.config import load_config
    from ofakd.engine import fit

    kd = tmp_path / "demo" / "student-kd"
    stopped = fit(load_config(str(kd / "config.yaml")), overwrite=True, stop_after_epochs=1, progress=False)
    assert not stopped["complete"]
    code, out, err = ofakd_cli("demo", "--quick", "--student-epochs", "2", "--out", tmp_path / "demo", "--device",
                               "cpu", "--resume")
    assert code == 0, err
    assert out.count("finished before, kept") == 3 and f"resuming {kd} after epoch 1" in out
    again = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r for r in again if r["method"] != "kd"] == [r for r in results if r["method"] != "kd"]
    assert next(r for r in again if r["method"] == "kd")["epochs"] == 2
    code, _, err = ofakd_cli("demo", "--out", tmp_path / "demo", "--device", "cpu", "--resume")  # other options
    assert code == 2 and "holds a demo run with other options" in err and "without --resume" in err


def test_demo_help_names_the_recipe_models():
    from ofakd.commands import demo
    from ofakd.config import read_recipe

    recipe = read_recipe("demo")
    assert recipe["teacher"]["name"] in demo.DESCRIPTION and recipe["student"]["name"] in demo.DESCRIPTION
    assert "--resume" in demo.DESCRIPTION and "--quick" in demo.DESCRIPTION
