"""The bad-input catalogue (docs/errors.md): every case is one line on stderr that names the problem
and the fix, exit status 2, no traceback; ``--debug`` shows the traceback instead.

Each case runs ``ofakd.cli.main([...])`` in-process on tiny models and data (a 16-px one-block ViT).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from ofakd.cli import main
from ofakd.errors import OfakdError
from tests import REPO

TINY = {"img_size": 16, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}
TEACHER = {"name": "test_byobnet", "input_size": [3, 16, 16], "random_init": True}  # a tiny random stand-in


def tiny(out: Path, command: str = "train") -> list[str]:
    """A valid tiny run's flags (students: the tiny ViT; distill: kd from a tiny CNN teacher)."""
    args = [command, "--config", "demo", "--out-dir", str(out / "runs"), "--epochs", "1",
            "--data.train_subset", "32", "--data.val_subset", "8", "--train.batch_size", "8",
            "--student.kwargs", json.dumps(TINY), "--student.input_size", "[3, 16, 16]"]
    if command == "distill":
        args += ["--set", f"teacher={json.dumps(TEACHER)}", "--method", "kd", "--train.eval_teacher", "false"]
    return args


def folder_data(out: Path, *, classes=("a", "b"), n=4, val=True) -> list[str]:
    """An ImageFolder with ``classes`` under out/data; returns the flags that use it."""
    rng = np.random.default_rng(0)
    for split in ("train", "val") if val else ("train",):
        for k, name in enumerate(classes):
            folder = out / "data" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}{k}_{i}.png")
    return ["--data", "imagefolder", "--data.root", str(out / "data"), "--data.train_subset", "null",
            "--data.val_subset", "null", "--train.batch_size", "4"]


class Payload:
    def __reduce__(self):
        return builtins.exec, ("open('PWNED', 'w').write('ran')",)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny `ofakd train` run."""
    out = tmp_path_factory.mktemp("finished")
    assert main([*tiny(out), "--name", "done"]) == 0
    return out / "runs" / "done"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


class Case(NamedTuple):
    id: str
    build: Callable[[Path, Path], list]
    """``build(tmp, finished) -> argv``; ``tmp`` is the test's folder, ``finished`` a finished run."""
    words: list[str]
    """Words the one line must hold."""
    code: int = 2
    """The exit status (docs/errors.md)."""
    setup: Callable[[pytest.MonkeyPatch], None] | None = None
    """What happens around the command (a signal, a torchrun environment), set up before it runs."""
    kept: Callable[[Path], None] | None = None
    """``kept(tmp)`` checks, after the command, that the user's files it must not touch are as they were."""


# ---- the user's files that a case places where ofakd writes: after the command, each must be as it was
USERS = "the user's own words\n"


def users_file(path: Path) -> Path:
    """A file of the user's, holding :data:`USERS`."""
    return write(path, USERS)


def users_files_kept(*names: str) -> Callable[[Path], None]:
    def check(tmp: Path) -> None:
        for name in names:
            assert (tmp / name).read_text() == USERS, f"{name} was changed or lost"
    return check


def link(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def run_copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def locked_through_a_link(tmp: Path, run: Path) -> Path:
    """A copy of a finished run whose run.lock is a symbolic link to a user's file outside the folder."""
    copy = run_copy(run, tmp / "copy")
    link(copy / "run.lock", users_file(tmp / "notes.txt"))
    return copy


def run_with_users_files(tmp: Path, run: Path) -> list[str]:
    """A copy of a finished run (runs/done) holding a user's notes.txt and analysis/plot.ipynb beside its files."""
    copy = run_copy(run, tmp / "runs" / "done")
    users_file(copy / "notes.txt")
    users_file(copy / "analysis" / "plot.ipynb")
    return [*tiny(tmp), "--name", "done", "--overwrite"]


def cache_record_args(teacher_run: Path, out: Path) -> list[str]:
    return ["cache", "record", "--config", "demo", "--teacher-run", str(teacher_run), "--student",
            "vit_tiny_patch16_224", "--student.kwargs", json.dumps(TINY), "--student.input_size", "[3, 16, 16]",
            "--data.train_subset", "32", "--train.batch_size", "8", "--epochs", "1", "--out", str(out)]


def quietly(argv: list) -> None:
    """Run ``ofakd ARGV`` as a case's preparation (its output is not the case's)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main([str(a) for a in argv]) == 0


def flip(path: Path, offset: int = -100) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    return path


def recorded_cache(tmp: Path, run: Path) -> Path:
    quietly(cache_record_args(run, tmp / "cache"))
    return tmp / "cache"


def garbled_marker(tmp: Path, run: Path) -> Path:
    """A recorded cache with flipped bytes in a block whose marker was garbled (no sha256 left in it)."""
    cache = recorded_cache(tmp, run)
    write(cache / "done" / "epoch_0000.rank_0000", b"\x00garbage")
    flip(cache / "epoch_0000.logits.f16")
    return cache


def renamed_weights_hash(tmp: Path, run: Path) -> Path:
    """A copy of a finished run whose best.safetensors has its ofakd_sha256 renamed and a flipped weight."""
    from safetensors.torch import load_file, save_file

    copy = run_copy(run, tmp / "copy")
    with safe_open(str(copy / "best.safetensors"), framework="pt") as f:
        meta = f.metadata()
    meta["ofakd_sha256_old"] = meta.pop("ofakd_sha256")
    tensors = load_file(copy / "best.safetensors")
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1
    save_file(tensors, copy / "best.safetensors", metadata=meta)
    return copy


def nan_weights(tmp: Path, run: Path) -> Path:
    """A copy of a finished run whose best.safetensors holds a NaN bias, written (and hashed) as ofakd writes it."""
    from ofakd.evaluation import load_student
    from ofakd.run_folder import read_student_metadata, save_weights

    copy = run_copy(run, tmp / "copy")
    model, _ = load_student(copy)
    with torch.no_grad():
        model.get_classifier().bias.fill_(float("nan"))
    save_weights(copy / "best.safetensors", model, read_student_metadata(copy / "best.safetensors"))
    return copy


def other_teacher_run(tmp: Path, run: Path) -> Path:
    """A copy of a finished run whose best weights are other (written and hashed as ofakd writes them)."""
    from ofakd.evaluation import load_student
    from ofakd.run_folder import read_student_metadata, save_weights

    copy = run_copy(run, tmp / "other")
    model, _ = load_student(copy)
    with torch.no_grad():
        model.get_classifier().bias.add_(1.0)
    save_weights(copy / "best.safetensors", model, read_student_metadata(copy / "best.safetensors"))
    return copy


def exported(tmp: Path, run: Path, edit: Callable[[dict], None]) -> Path:
    """A timm export of a finished run whose config.json ``edit`` changed."""
    quietly(["export", run, "--out", tmp / "export"])
    config = json.loads((tmp / "export" / "config.json").read_text())
    edit(config)
    (tmp / "export" / "config.json").write_text(json.dumps(config))
    return tmp / "export"


NOT_TEXT = b"train:\n  lr: \xff\xfe\x80 0.1\n"
"""Bytes that are not UTF-8 text (a binary file, a file in another encoding)."""


def edited_config(tmp: Path, run: Path, old: str, new: str) -> Path:
    """A copy of a finished run whose config.yaml had ``old`` replaced by ``new`` (a one-line edit)."""
    copy = run_copy(run, tmp / "copy")
    text = (copy / "config.yaml").read_text()
    assert old in text
    (copy / "config.yaml").write_text(text.replace(old, new, 1))
    return copy


def killed_in_setup(tmp: Path, run: Path) -> Path:
    """What a run SIGKILLed while it set up leaves: config.yaml and metrics.jsonl, no checkpoint (runs/early)."""
    copy = run_copy(run, tmp / "runs" / "early")
    for name in ("last.pt", "last.prev.pt", "best.safetensors", "summary.json"):
        (copy / name).unlink(missing_ok=True)
    return copy


def with_file_not_text(tmp: Path, run: Path, name: str) -> Path:
    """A copy of a finished run whose ``name`` holds bytes that are not UTF-8 text."""
    copy = run_copy(run, tmp / "copy")
    write(copy / name, NOT_TEXT)
    return copy


ALIAS_BOMB = "student:\n  kwargs:\n    a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"    {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
"""A 'billion laughs': 9 levels of 9 aliases, 9**9 (387 million) strings once expanded, in 300 bytes."""


def without_sha256(config: dict) -> None:
    del config["ofakd"]["exports"]["timm"]["sha256"]


def one_more_class(config: dict) -> None:
    config["num_classes"] += 1


# ---- what some cases need: folders that cannot be written, signals, a torchrun peer that never comes
_MOUNTS: list[Path] = []


def tmpfs(folder: Path, options: str) -> Path:
    """Mount a tmpfs with ``options`` at ``folder`` (root only), unmounted after the test."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True,
                       capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"cannot mount a tmpfs here ({err})")
    _MOUNTS.append(folder)
    return folder


@pytest.fixture(autouse=True)
def _unmount_tmpfs():
    yield
    while _MOUNTS:
        subprocess.run(["umount", "-l", str(_MOUNTS.pop())], check=False, capture_output=True, timeout=20)


def read_only(tmp: Path) -> Path:
    """A folder nothing can be written into: a read-only tmpfs (as root), else one without write permission."""
    if os.geteuid() == 0:
        return tmpfs(tmp / "ro", "ro,size=1m")
    folder = mkdir(tmp / "ro")
    folder.chmod(0o555)
    return folder


def cka_args(out: Path) -> list[str]:
    return ["cka", "--model-a", "test_byobnet", "--model-b", "test_byobnet", "--data", "digits", "--val-subset", "16",
            "--batch-size", "8", "--batches", "1", "--no-progress", "--out", str(out)]


def peer_never_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment torchrun gives rank 0 of 2; rank 1 never starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key, value in dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2",
                           MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)


def sigterm_while_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real SIGTERM (a cluster preempting the job) as the first epoch starts."""
    import ofakd.engine.trainer as trainer

    original = trainer.train_one_epoch

    def epoch_after_a_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", epoch_after_a_signal)


def sigint_while_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real SIGINT (Ctrl-C) while the command line imports its commands."""
    import ofakd.cli

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # e.g. pytest started as a background job of a script
        pytest.skip("this process was started with SIGINT ignored: no Ctrl-C can reach it")

    original = importlib.import_module

    def import_after_a_signal(name, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(ofakd.cli.importlib, "import_module", import_after_a_signal)


CASES = [Case(*case) for case in [
    # ---- configs and overrides
    ("unknown-key", lambda t, f: [*tiny(t), "--set", "train.lrr=0.1"], ["unknown key 'train.lrr'", "did you mean 'train.lr'"]),
    ("wrong-type", lambda t, f: [*tiny(t), "--train.epochs", "ten"], ["train.epochs", "expected an integer", "'ten'"]),
    ("unknown-recipe", lambda t, f: ["train", "--config", "cifar-cn"], ["unknown recipe 'cifar-cn'", "did you mean 'cifar-cnn'"]),
    ("missing-config-file", lambda t, f: ["train", "--config", str(t / "nope.yaml")], ["nope.yaml", "does not exist", "recipe name"]),
    ("yaml-syntax", lambda t, f: ["train", "--config", str(write(t / "bad.yaml", "train: {lr: [1,\n"))],
     ["bad.yaml", "is not valid YAML", "line"]),
    ("config-not-a-mapping", lambda t, f: ["train", "--config", str(write(t / "list.yaml", "- 1\n- 2\n"))],
     ["list.yaml", "must hold a mapping of sections"]),
    ("base-loop", lambda t, f: ["train", "--config", str(write(t / "a.yaml", "base: b.yaml\n"))] if write(
        t / "b.yaml", "base: a.yaml\n") else [], ["recipes inherit in a loop", "a.yaml", "b.yaml"]),
    ("override-into-a-value", lambda t, f: [*tiny(t), "--set", "train=5", "--set", "train.lr=1"],
     ["cannot set 'train.lr'", "'train' is a value, not a section"]),
    ("set-without-equals", lambda t, f: [*tiny(t), "--set", "train.lr"], ["'train.lr' must look like KEY=VALUE", "train.lr=0.1"]),
    ("unknown-flag", lambda t, f: [*tiny(t), "--trian.lr", "0.1"], ["unknown option '--trian.lr'", "did you mean '--train.lr'"]),
    ("flag-without-value", lambda t, f: [*tiny(t), "--epochs"], ["--epochs", "expected one argument", "--help"]),
    ("negative-lr", lambda t, f: [*tiny(t), "--train.lr", "-1"], ["train.lr", "greater than 0", "-1"]),
    ("zero-epochs", lambda t, f: [*tiny(t), "--epochs", "0"], ["train.epochs", "greater than or equal to 1"]),
    ("unknown-optimizer", lambda t, f: [*tiny(t), "--train.optimizer", "sgdd"], ["unknown timm optimizer 'sgdd'", "sgd"]),
    ("bad-probability", lambda t, f: [*tiny(t), "--augment.hflip", "1.5"], ["augment.hflip", "probability between 0 and 1"]),
    ("bad-interpolation", lambda t, f: [*tiny(t), "--augment.interpolation", "cubic"],
     ["augment.interpolation", "must be one of", "bicubic"]),
    ("bad-nonfinite-policy", lambda t, f: [*tiny(t), "--set", "train.nonfinite=ignore"],
     ["train.nonfinite", "'stop' or 'skip'", "'ignore'"]),
    ("checkpoint-every-zero", lambda t, f: [*tiny(t), "--checkpoint-every", "0"], ["train.checkpoint_every", "greater than or equal to 1"]),
    ("negative-stop-after", lambda t, f: [*tiny(t), "--stop-after-epochs", "-1"], ["--stop-after-epochs", ">= 0"]),
    ("not-a-device", lambda t, f: [*tiny(t), "--device", "toaster"], ["train.device", "not a device", "cpu"]),
    ("fp16-without-gpu", lambda t, f: [*tiny(t), "--device", "cpu", "--train.amp", "fp16"], ["fp16 needs a CUDA GPU", "bf16 or none"]),
    # ---- run folders and resume
    ("run-exists", lambda t, f: [*tiny(f.parent.parent), "--name", "done"], ["already exists", "--resume", "--overwrite"]),
    ("unusable-run-name", lambda t, f: [*tiny(t), "--name", "../.."], ["run.name", "no usable characters"]),
    ("overwrite-a-non-run-folder", lambda t, f: [*tiny(t), "--name", "mine", "--overwrite"] if write(
        t / "runs" / "mine" / "thesis.tex", "keep me") else [], ["does not look like a run folder", "not deleting"]),
    ("overwrite-keeps-users-files", lambda t, f: run_with_users_files(t, f),
     ["--overwrite", "holds files a run did not write (analysis/, notes.txt)", "move them away"], 2, None,
     users_files_kept("runs/done/notes.txt", "runs/done/analysis/plot.ipynb")),
    ("lock-is-a-link", lambda t, f: ["train", "--resume", str(locked_through_a_link(t, f))],
     ["copy/run.lock is a symbolic link", "never writes through a link", "remove the link"], 2, None,
     users_files_kept("notes.txt")),
    ("resume-not-a-run", lambda t, f: ["train", "--resume", str(t)], ["no config.yaml there", "runs/NAME"]),
    ("resume-changes-recipe", lambda t, f: ["train", "--resume", str(f), "--set", "train.lr=1"],
     ["'train.lr' cannot change", "Start a new run"]),
    ("resume-edited-config", lambda t, f: ["train", "--resume", str(edited_config(t, f, "epochs: 1", "epochs: 5"))],
     ["config.yaml differs from the recipe last.pt records at 'train.epochs' (1 in last.pt, 5 in config.yaml)",
      "restore it", "--train.epochs VALUE"]),
    ("rerun-after-a-kill-in-setup", lambda t, f: [*tiny(t), "--name", "early"] if killed_in_setup(t, f) else [],
     ["runs/early holds a run that stopped before its first checkpoint", "pass --overwrite to start it again"]),
    ("resume-after-a-kill-in-setup", lambda t, f: ["train", "--resume", str(killed_in_setup(t, f))],
     ["no last.pt there (the run stopped before its first checkpoint)", "start it again with --overwrite"]),
    ("resume-with-overwrite", lambda t, f: ["train", "--resume", str(f), "--overwrite"],
     ["--resume", "--overwrite would delete it", "pass one of them"]),
    ("resume-damaged-checkpoint", lambda t, f: ["train", "--resume", str(damaged_copy(f, t))],
     ["last.pt is not a readable checkpoint", "nothing to resume", "--overwrite"]),
    # ---- model names and checkpoints
    ("unknown-model", lambda t, f: [*tiny(t), "--model", "resnet19"], ["unknown model 'resnet19'", "resnet18"]),
    ("unknown-teacher", lambda t, f: [*tiny(t, "distill"), "--teacher", "test_byobnett"],
     ["unknown model 'test_byobnett'", "test_byobnet"]),
    ("teacher-missing", lambda t, f: [*tiny(t, "distill"), "--set", "teacher={}"], ["teacher.name is required", "--teacher NAME"]),
    ("unknown-method", lambda t, f: [*tiny(t, "distill"), "--method", "ofaa"], ["method.name", "'ofaa'"]),
    ("bad-model-kwargs", lambda t, f: [*tiny(t), "--set", "student.kwargs.patch_size=0"],
     ["vit_tiny_patch16_224", "student.kwargs"]),
    ("input-size-mismatch", lambda t, f: [*tiny(t), "--student.input_size", "[3, 32, 32]"],
     ["cannot take student.input_size [3, 32, 32]", "kwargs.img_size"]),
    ("pretrained-file-missing", lambda t, f: [*tiny(t), "--pretrained", str(t / "none.safetensors")],
     ["student.pretrained", "does not exist", "local weights file"]),
    ("pretrained-damaged", lambda t, f: [*tiny(t), "--pretrained", str(flip(
        run_copy(f, t / "copy") / "best.safetensors", offset=-64))],
     ["copy/best.safetensors is damaged: its tensors or metadata differ from the sha256"]),
    ("pretrained-runs-code", lambda t, f: [*tiny(t), "--pretrained", str(saved(
        t / "evil.pth", {"w": torch.ones(1), "x": Payload()}))], ["evil.pth", "refused for safety", "safetensors"]),
    ("unknown-pretrained-tag", lambda t, f: [*tiny(t, "distill"), "--teacher", "test_byobnet.r42_in9k"],
     ["model 'test_byobnet' has no pretrained tag 'r42_in9k'", "its tags: test_byobnet.r160_in1k"]),
    ("hub-weights-not-cached", lambda t, f: [*tiny(t, "distill"), "--teacher", "test_byobnet.r160_in1k",
                                             "--teacher-pretrained"],
     ["'test_byobnet.r160_in1k'", "Hub repo timm/test_byobnet.r160_in1k", "not in the Hugging Face cache",
      "`hf download timm/test_byobnet.r160_in1k`", "local weights file"]),
    ("teacher-checkpoint-missing", lambda t, f: [*tiny(t, "distill"), "--teacher-checkpoint", str(t / "none.pth")],
     ["none.pth", "does not exist"]),
    ("teacher-checkpoint-garbage", lambda t, f: [*tiny(t, "distill"), "--teacher-checkpoint",
                                                 str(write(t / "t.pth", b"not a checkpoint"))],
     ["t.pth", "truncated or not a PyTorch file"]),
    ("teacher-checkpoint-other-model", lambda t, f: [*tiny(t, "distill"), "--teacher-checkpoint", str(saved(
        t / "lin.pth", torch.nn.Linear(3, 4).state_dict()))], ["lin.pth", "does not fit", "missing", "model name"]),
    ("teacher-checkpoint-no-state-dict", lambda t, f: [*tiny(t, "distill"), "--teacher-checkpoint", str(saved(
        t / "meta.pth", {"epoch": 3, "note": "hi"}))], ["meta.pth", "has no state_dict", "{'model': state_dict}"]),
    ("teacher-checkpoint-runs-code", lambda t, f: [*tiny(t, "distill"), "--teacher-checkpoint", str(saved(
        t / "evil.pth", {"w": torch.ones(1), "x": Payload()}))], ["evil.pth", "refused for safety", "safetensors"]),
    ("corrupt-safetensors", lambda t, f: [*tiny(t, "distill"), "--teacher-checkpoint", str(write(t / "w.safetensors", b"xx"))],
     ["w.safetensors", "not a readable safetensors file"]),
    ("teacher-run-with-checkpoint", lambda t, f: [*tiny(t, "distill"), "--teacher-run", str(f), "--teacher-checkpoint",
                                                  str(f / "best.safetensors")],
     ["--teacher-run", "gives the teacher's name and weights", "drop --teacher-checkpoint"]),
    ("teacher-run-not-a-run", lambda t, f: [*tiny(t, "distill"), "--teacher-run", str(t)],
     ["--teacher-run", "expected config.yaml and best.safetensors"]),
    ("teacher-without-weights", lambda t, f: [*tiny(t, "distill"), "--set", "teacher.random_init=false"],
     ["teacher test_byobnet has no weights", "--teacher-checkpoint PATH", "--teacher-run runs/NAME",
      "--teacher-random-init"]),
    ("eval-edited-config", lambda t, f: ["eval", str(edited_config(t, f, "val_subset: 8", "val_subset: 4"))],
     ["copy/config.yaml differs from the recipe best.safetensors records at data.val_subset (8 there, 4 in",
      "--data.val_subset VALUE"]),
    ("eval-missing-target", lambda t, f: ["eval", str(t / "nothing")], ["nothing", "does not exist", "run folder"]),
    ("eval-run-without-best", lambda t, f: ["eval", str(without_best(f, t))], ["has no best.safetensors", "no epoch finished"]),
    # ---- data folders
    ("imagefolder-without-root", lambda t, f: [*tiny(t), "--data", "imagefolder"], ["imagefolder needs --data.root", "ROOT/train"]),
    ("data-root-missing", lambda t, f: [*tiny(t), "--data", "imagefolder", "--data.root", str(t / "nowhere")],
     ["data folder not found", "nowhere", "ROOT/train/<class>/<image>"]),
    ("empty-data-folder", lambda t, f: [*tiny(t), *folder_data(t, classes=()), "--data.root", str(mkdir(t / "empty"))],
     ["folder not found", "train", "ROOT/train/<class>/<image>"]),
    ("images-without-class-folders", lambda t, f: [*tiny(t), *flat_images(t)], ["no class folders in", "ROOT/train/<class>"]),
    ("one-class-only", lambda t, f: [*tiny(t), *folder_data(t, classes=("cat",))], ["only one class folder (cat)", "at least two"]),
    ("classes-differ", lambda t, f: [*tiny(t), *folder_data(t, classes=("a", "b"), val=False), *val_only(t, ("a", "c"))],
     ["class folders differ", "only in train: b", "only in val: c"]),
    ("empty-class-folder", lambda t, f: [*tiny(t), *empty_class(t)], ["holds no images", "add images or remove the folder"]),
    ("corrupt-image", lambda t, f: [*tiny(t), *corrupt(t)], ["cannot read image", "broken.png", "--data.skip_corrupt true"]),
    ("corrupt-image-in-a-worker", lambda t, f: [*tiny(t), *corrupt(t), "--data.workers", "1"],
     ["cannot read image", "broken.png", "--data.skip_corrupt true"]),
    ("float-image", lambda t, f: [*tiny(t), *float_image(t)],
     ["float.tif holds 32-bit float pixels, whose range ofakd cannot know", "8- or 16-bit"]),
    ("subset-larger-than-data", lambda t, f: [*tiny(t), "--data.train_subset", "100000"], ["data.train_subset=100000", "larger than"]),
    ("no-full-batch", lambda t, f: [*tiny(t), "--train.batch_size", "64"], ["make no full batch of 64", "lower the batch size"]),
    ("mixup-odd-batch", lambda t, f: [*tiny(t), "--augment.mixup", "0.5", "--train.batch_size", "7"], ["even batch size", "7"]),
    ("download-not-possible", lambda t, f: [*tiny(t), "--data.download", "true"], ["download applies only to", "data.download false"]),
    ("cifar-files-missing", lambda t, f: [*tiny(t), "--data", "cifar10", "--data.root", str(t)], ["CIFAR-10 files not found", "--data.download true"]),
    # ---- teacher caches
    ("cache-missing", lambda t, f: [*tiny(t, "distill"), "--teacher-cache", str(t / "nocache")],
     ["teacher cache", "does not exist", "ofakd cache record"]),
    ("cache-manifest-garbage", lambda t, f: [*tiny(t, "distill"), "--teacher-cache", str(cache_with(t, b"\x80\x04garbage"))],
     ["manifest.json is unreadable", "record the cache again"]),
    ("cache-foreign-manifest", lambda t, f: [*tiny(t, "distill"), "--teacher-cache", str(cache_with(t, b"{}"))],
     ["not an ofakd teacher-cache manifest"]),
    ("cache-newer-version", lambda t, f: [*tiny(t, "distill"), "--teacher-cache", str(cache_with(
        t, json.dumps({"format": "ofakd-teacher-cache", "version": 99}).encode()))], ["version", "99", "record the cache again"]),
    ("cache-block-is-a-link", lambda t, f: cache_record_args(f, t / "cache") if link(
        t / "cache" / "epoch_0000.logits.f16", users_file(t / "notes.txt")) else [],
     ["cache/epoch_0000.logits.f16 is a symbolic link", "never writes through a link"], 2, None,
     users_files_kept("notes.txt")),
    ("cache-marker-garbled", lambda t, f: ["cache", "info", str(garbled_marker(t, f)), "--verify"],
     ["done/epoch_0000.rank_0000 (the marker of rank 0's rows) is unreadable", "a damaged marker", "the cache is damaged",
      "record that block again"]),
    # ---- hash records removed or renamed: damage, not "an older ofakd"
    ("weights-hash-renamed", lambda t, f: ["eval", str(renamed_weights_hash(t, f))],
     ["copy/best.safetensors is damaged", "lacks the ofakd_sha256 that every file of its format"]),
    ("export-hash-removed", lambda t, f: ["eval", str(flip(exported(t, f, without_sha256) / "model.safetensors").parent)],
     ["export/model.safetensors cannot be checked", "lacks its sha256", "export it again"]),
    ("export-config-edited", lambda t, f: ["eval", str(exported(t, f, one_more_class))],
     ["export/config.json does not describe the exported weights", "randomly initialised", "export it again"]),
    ("export-nan-weights", lambda t, f: ["export", str(nan_weights(t, f)), "--out", str(t / "export")],
     ["the weights of", "copy hold NaN/inf (head.bias)", "export weights that are finite"]),
    # ---- exports into a folder of the user's
    ("export-over-users-readme", lambda t, f: ["export", str(f), "--out", str(users_file(t / "mine" / "README.md").parent)],
     ["mine/README.md was not written by ofakd export", "never replaces a file it did not write", "another --out"], 2,
     None, users_files_kept("mine/README.md")),
    ("export-overwrite-users-files", lambda t, f: ["export", str(f), "--overwrite", "--out", str(
        users_file(t / "mine" / "config.json").parent)] if users_file(t / "mine" / "notes.txt") else [],
     ["mine/config.json was not written by ofakd export", "--overwrite included"], 2, None,
     users_files_kept("mine/config.json", "mine/notes.txt")),
    ("cache-of-another-teacher-run", lambda t, f: [*tiny(t, "distill"), "--teacher-cache", str(recorded_cache(t, f)),
                                                   "--teacher-run", str(other_teacher_run(t, f))],
     ["teacher cache", "teacher.checkpoint_sha256 was", "when recorded but is"]),
    # ---- method options
    ("method-option-out-of-range", lambda t, f: [*tiny(t, "distill"), "--method", "ofa", "--method.eps", "[0]"], ["method.eps"]),
    ("method-option-unknown", lambda t, f: [*tiny(t, "distill"), "--set", "method.temprature=2"],
     ["unknown key 'method.temprature'", "did you mean 'method.temperature'"]),
    ("method-option-wrong-type", lambda t, f: [*tiny(t, "distill"), "--method.temperature", "hot"],
     ["method.temperature", "expected a number", "'hot'"]),
    ("zero-temperature", lambda t, f: [*tiny(t, "distill"), "--method.temperature", "0"],
     ["method.temperature", "temperature must be >= 0.01", "got 0"]),
    ("temperature-below-floor", lambda t, f: [*tiny(t, "distill"), "--method.temperature", "1e-30"],
     ["method.temperature", "temperature must be >= 0.01", "one-hot for any logits", "got 1e-30"]),
    ("every-loss-weight-zero", lambda t, f: [*tiny(t, "distill"), "--method.kd_weight", "0", "--method.gt_weight", "0"],
     ["config: method: every loss weight is 0 (gt_weight, kd_weight)", "learn nothing"]),
    ("momentum-of-one-or-more", lambda t, f: [*tiny(t), "--train.optimizer", "sgd", "--train.momentum", "2"],
     ["train.momentum", "less than 1", "got 2"]),
    ("momentum-for-adamw", lambda t, f: [*tiny(t), "--train.optimizer", "adamw", "--train.momentum", "0.5"],
     ["train.momentum 0.5 does nothing for adamw", "remove train.momentum"]),
    ("negative-loss-weight", lambda t, f: [*tiny(t, "distill"), "--method", "ofa", "--method.ofa_weight", "-1"],
     ["method.ofa_weight", "loss weight must be >= 0", "got -1"]),
    # ---- values the engine cannot compute with
    ("min-lr-above-lr", lambda t, f: [*tiny(t), "--train.lr", "0.01", "--train.min_lr", "0.1"],
     ["train.min_lr", "must not exceed train.lr (0.01)", "got 0.1"]),
    ("seed-too-large", lambda t, f: [*tiny(t), "--seed", str(2**70)], ["train.seed", "less than or equal to 4294967295"]),
    ("lr-beyond-float32", lambda t, f: [*tiny(t), "--train.lr", "1e300"], ["train.lr", "beyond float32's range"]),
    ("model-kwargs-num-classes", lambda t, f: [*tiny(t), "--set", "student.kwargs.num_classes=5"],
     ["student.kwargs", "num_classes comes from the data set", "remove it"]),
    ("config-not-text", lambda t, f: ["train", "--config", str(write(t / "latin1.yaml", NOT_TEXT))],
     ["latin1.yaml is not UTF-8 text (byte 0xff at position 13)", "YAML text file"]),
    ("resume-config-not-text", lambda t, f: ["train", "--resume", str(with_file_not_text(t, f, "config.yaml"))],
     ["copy/config.yaml is not UTF-8 text"]),
    ("eval-config-not-text", lambda t, f: ["eval", str(with_file_not_text(t, f, "config.yaml"))],
     ["copy/config.yaml is not UTF-8 text"]),
    ("export-config-not-text", lambda t, f: ["export", str(with_file_not_text(t, f, "config.yaml")), "--out",
                                             str(t / "export")], ["copy/config.yaml is not UTF-8 text"]),
    ("teacher-run-config-not-text", lambda t, f: [*tiny(t, "distill"), "--teacher-run",
                                                  str(with_file_not_text(t, f, "config.yaml"))],
     ["copy/config.yaml is not UTF-8 text"]),
    ("report-summary-not-text", lambda t, f: ["report", str(with_file_not_text(t, f, "summary.json"))],
     ["copy/summary.json is not valid JSON text", "invalid start byte"]),
    ("export-json-not-text", lambda t, f: ["eval", str(write(exported(t, f, lambda c: None) / "config.json",
                                                             NOT_TEXT).parent)],
     ["export/config.json is not readable JSON text"]),
    ("yaml-alias-bomb", lambda t, f: ["train", "--config", str(write(t / "bomb.yaml", ALIAS_BOMB))],
     ["bomb.yaml: its aliases expand to more than 100,000 values", "write the values out"]),
    ("cka-val-subset-zero", lambda t, f: [*cka_args(t / "cka"), "--val-subset", "0"],
     ["data.val_subset", "must be a positive number of images"]),
    ("duplicate-yaml-key", lambda t, f: ["train", "--config", str(write(t / "dup.yaml", "train:\n  lr: 0.1\n  lr: 0.2\n"))],
     ["dup.yaml line 3", "key 'lr' appears twice", "keep one"]),
    ("out-dir-is-a-file", lambda t, f: [*tiny(t), "--out-dir", str(write(t / "afile", "x"))],
     ["--out-dir", "afile is a file", "pass a folder"]),
    # ---- disks that cannot take a file (74): nothing written, nothing lost
    ("read-only-out-dir", lambda t, f: [*tiny(t), "--out-dir", str(read_only(t) / "runs")],
     ["cannot write", "/ro/runs", "nothing was replaced"], 74),
    ("read-only-cka-out", lambda t, f: cka_args(read_only(t) / "cka"), ["cannot write", "/ro/cka", "nothing was replaced"], 74),
    ("read-only-export-out", lambda t, f: ["export", str(f), "--out", str(read_only(t) / "export")],
     ["cannot write", "/ro/export (Read-only file system)", "nothing was replaced"], 74),
    ("full-disk-cka", lambda t, f: cka_args(tmpfs(t / "disk", "size=12k") / "cka"),
     ["cannot write", "cka.png (No space left on device)", "free disk space"], 74),
    ("full-disk-export", lambda t, f: ["export", str(f), "--out", str(tmpfs(t / "disk", "size=12k") / "export")],
     ["cannot write", "export/model.safetensors (No space left on device)", "free disk space"], 74),
    ("full-disk-cache-record", lambda t, f: [*cache_record_args(f, tmpfs(t / "disk", "size=16k") / "cache"),
                                             "--data.train_subset", "1024", "--train.batch_size", "64"],
     ["cannot write", "cache/epoch_0000.logits.f16 (No space left on device)", "free disk space"], 74),
    ("read-only-report-out", lambda t, f: ["report", str(f), "--out", str(read_only(t) / "report")],
     ["cannot write", "/ro/report", "nothing was replaced"], 74),
    # ---- runs that stop: a diverged loss (3), a torchrun peer that never comes (69), signals (75, 130)
    ("loss-diverges", lambda t, f: [*tiny(t), "--train.optimizer", "sgd", "--train.lr", "1e30"],
     ["non-finite loss at epoch 1", "lower train.lr"], 3),
    ("peer-never-joins", lambda t, f: [*tiny(t), "--train.dist_timeout", "1"],
     ["rank 0 of 2: could not join the process group", "MASTER_ADDR:MASTER_PORT"], 69, peer_never_joins),
    ("sigterm-while-training", lambda t, f: tiny(t), ["SIGTERM received: saved", "last.pt (step 1", "--resume"], 75,
     sigterm_while_training),
    ("ctrl-c-while-starting", lambda t, f: tiny(t), ["interrupted (Ctrl-C) while starting", "nothing was done"], 130,
     sigint_while_starting),
]]

PREFIX = {3: "ofakd {}: error: ", 69: "ofakd {}: stopped: ", 75: "ofakd {}: interrupted: ", 130: "ofakd: interrupted "}
"""How the one line starts, by exit status (``ofakd COMMAND: error: `` unless named here)."""


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def saved(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def damaged_copy(run: Path, tmp: Path) -> Path:
    copy = tmp / "copy"
    shutil.copytree(run, copy)
    (copy / "last.pt").write_bytes((copy / "last.pt").read_bytes()[:1000])
    (copy / "last.prev.pt").unlink(missing_ok=True)
    return copy


def without_best(run: Path, tmp: Path) -> Path:
    copy = tmp / "nobest"
    shutil.copytree(run, copy)
    (copy / "best.safetensors").unlink()
    return copy


def flat_images(tmp: Path) -> list[str]:
    folder_data(tmp, classes=("a", "b"))
    for split in ("train", "val"):
        for path in (tmp / "data" / split).rglob("*.png"):
            path.rename(tmp / "data" / split / path.name)
        for sub in ("a", "b"):
            (tmp / "data" / split / sub).rmdir()
    return ["--data", "imagefolder", "--data.root", str(tmp / "data")]


def val_only(tmp: Path, classes) -> list[str]:
    for name in classes:
        folder = tmp / "data" / "val" / name
        folder.mkdir(parents=True)
        Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(folder / "x.png")
    return []


def empty_class(tmp: Path) -> list[str]:
    args = folder_data(tmp, classes=("a", "b"))
    for split in ("train", "val"):
        (tmp / "data" / split / "z").mkdir()
    return args


def corrupt(tmp: Path) -> list[str]:
    args = folder_data(tmp, classes=("a", "b"), n=4)
    good = next((tmp / "data" / "train" / "a").glob("*.png"))
    write(tmp / "data" / "train" / "a" / "broken.png", good.read_bytes()[:60])  # a PNG cut short
    return [*args, "--train.batch_size", "9"]  # one batch of every image: broken.png is in it


def float_image(tmp: Path) -> list[str]:
    """An image folder with one 32-bit float TIFF (a range ofakd cannot know) among its images."""
    args = folder_data(tmp, classes=("a", "b"), n=4)
    Image.fromarray(np.full((12, 12), 0.5, dtype=np.float32)).save(tmp / "data" / "train" / "a" / "float.tif")
    return [*args, "--train.batch_size", "9"]  # one batch of every image: float.tif is in it


def cache_with(tmp: Path, manifest: bytes) -> Path:
    write(tmp / "cache" / "manifest.json", manifest)
    return tmp / "cache"


def run_cli(capsys, argv) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # (must not happen: usage errors return 2 too)
        code = f"SystemExit({exit_.code})"
    _, err = capsys.readouterr()
    return code, err


def test_the_catalogue_is_large_and_distinct():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) >= 30


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clear_line(case, tmp_path, finished, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # (anything written to the working folder stays in the test's folder)
    argv = case.build(tmp_path, finished)
    if case.setup is not None:
        case.setup(monkeypatch)
    code, err = run_cli(capsys, argv)
    lines = err.strip().splitlines()
    assert code == case.code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(PREFIX.get(case.code, "ofakd {}: error: ").format(argv[0])), lines[0]
    for word in case.words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert not (tmp_path / "PWNED").exists()
    if case.kept is not None:
        case.kept(tmp_path)
    if case.code == 2 and case.id != "run-exists":  # bad input leaves no run folder behind (a lock taken and let go)
        assert not (tmp_path / "runs").exists() or any((tmp_path / "runs").iterdir()), "an empty runs/ was left"


@pytest.mark.parametrize("build", [CASES[1].build, next(c.build for c in CASES if c.id == "unknown-model")])
def test_debug_shows_the_traceback(build, tmp_path, finished):
    with pytest.raises(OfakdError):
        main(["--debug", *[str(a) for a in build(tmp_path, finished)]])


def test_skip_corrupt_trains_past_a_broken_image(tmp_path, capsys):
    args = corrupt(tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) under .*broken.png"):
        code = main([*tiny(tmp_path), *args, "--data.skip_corrupt", "true", "--train.batch_size", "4", "--name", "skip"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "runs" / "skip" / "summary.json").read_text())
    assert summary["train_images"] == 8 and summary["complete"]


def test_resume_with_the_runs_own_flags_changes_nothing(finished, tmp_path, capsys):
    """The command line that started a run, with --resume added, is accepted: the flags change no value."""
    out = tmp_path / "out"
    args = [*tiny(out, "distill"), "--teacher-run", str(finished), "--name", "student"]
    assert main(args) == 0
    capsys.readouterr()
    code, err = run_cli(capsys, [*args, "--resume", out / "runs" / "student"])
    assert code == 0 and "cannot change" not in err, err
    code, err = run_cli(capsys, [*args, "--resume", out / "runs" / "student", "--train.lr", "0.5"])
    assert code == 2 and "'train.lr' cannot change" in err


def test_every_documented_exit_status_has_a_case():
    """docs/errors.md's table of exit statuses: each status is produced by a case of the catalogue (0 by the
    ``finished`` run every case uses), and each row shows an example."""
    doc = (REPO / "docs" / "errors.md").read_text()
    table = doc.split("## Exit statuses", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if re.match(r"\| \d+ \|", line)]
    documented = {int(row.split("|")[1]) for row in rows}
    assert documented == {0, 2, 3, 69, 74, 75, 130}
    assert documented == {0} | {case.code for case in CASES}
    assert all(row.split("|")[3].strip().startswith("`") for row in rows)  # the example column


def test_the_documented_catalogue_is_the_tested_one():
    """docs/errors.md's catalogue lists every case of this file, by test id, once, numbered in order."""
    doc = (REPO / "docs" / "errors.md").read_text()
    table = doc.split("## The bad-input catalogue", 1)[1]
    rows = [line.split("|") for line in table.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(row[1]) for row in rows] == list(range(1, len(rows) + 1))
    documented = [row[4].strip().strip("`") for row in rows]
    assert sorted(documented) == sorted(case.id for case in CASES)


@pytest.mark.parametrize("command", ["train", "eval-run", "eval-export", "cka", "cache-record", "tune"])
def test_val_subset_zero_is_one_line_in_every_command(command, tmp_path, finished, capsys):
    """``--val-subset 0`` (``--data.val_subset 0``) names the field in one line in every command that takes it."""
    argv = {"train": lambda: tiny(tmp_path),
            "eval-run": lambda: ["eval", finished],
            "eval-export": lambda: ["eval", exported(tmp_path, finished, lambda c: None)],
            "cka": lambda: cka_args(tmp_path / "cka"),
            "cache-record": lambda: cache_record_args(finished, tmp_path / "cache"),
            "tune": lambda: ["tune", "--config", "demo", "--out", tmp_path / "tune"]}[command]()
    flag = "--val-subset" if command == "cka" else "--data.val_subset"
    code, err = run_cli(capsys, [*argv, flag, "0"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "data.val_subset: must be a positive number of images" in err and "Traceback" not in err


def test_metrics_lines_that_are_not_records_are_named_once(finished, tmp_path, capsys):
    """A metrics.jsonl with a garbage line and a line that is not text: `ofakd report` says so, once, and reports
    the run from the records that remain."""
    copy = run_copy(finished, tmp_path / "copy")
    lines = (copy / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (copy / "metrics.jsonl").write_bytes(b"".join([lines[0], b"garbage\n", NOT_TEXT, *lines[1:]]))
    with pytest.warns(UserWarning, match=r"metrics.jsonl: 3 line\(s\) are not JSON records \(line 2 first\)") as seen:
        code, err = run_cli(capsys, ["report", copy, "--out", tmp_path / "report"])
    assert code == 0, err
    assert len(seen) == 1


def test_report_names_an_edited_summary_and_reports_the_weights_value(finished, tmp_path, capsys):
    """summary.json's best top-1 edited to 99.9: `ofakd report` says so and reports best.safetensors' value."""
    copy = run_copy(finished, tmp_path / "copy")
    summary = json.loads((copy / "summary.json").read_text())
    true_top1 = summary["best_top1"]
    (copy / "summary.json").write_text(json.dumps({**summary, "best_top1": 99.9}))
    with pytest.warns(UserWarning, match=r"summary.json differs from best.safetensors at best_top1 99.9"):
        code, err = run_cli(capsys, ["report", copy, "--out", tmp_path / "report"])
    assert code == 0, err
    table = (tmp_path / "report" / "report.md").read_text()
    assert "99.9" not in table and f"{true_top1:.2f}" in table
