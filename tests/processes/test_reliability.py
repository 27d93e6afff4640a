"""Faults injected for real into tiny training runs: signals, SIGKILL, damaged checkpoints, a full disk,
a file-size limit, NaN losses and gradients, checkpoints crafted to run code, run names that climb out.

Each run is a 16-px one-block ViT with drop-path and dropout (so the generators of the model side
matter) on 96 digits, batch 8: 12 steps per epoch, 2 epochs. The reference is the same run
uninterrupted; "exact" means every tensor of the final ``last.pt`` and every log record are equal.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import json
import os
import pickle
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ofakd.cli import main
from ofakd.run_folder import (
    CheckpointWriteError,
    file_problem,
    load_resume_state,
    load_state,
    previous_path,
    read_metrics,
    save_state,
)

TINY = {"img_size": 16, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2,
        "drop_path_rate": 0.2, "proj_drop_rate": 0.1}
STEPS_PER_EPOCH = 12
TEACHER = {"name": "test_byobnet", "input_size": [3, 16, 16], "random_init": True}  # a tiny random stand-in


def run_args(out, name, *extra, epochs=2, command="train"):
    """``ofakd train`` (or distill) of the tiny run; ``extra`` flags go last."""
    args = [command, "--config", "demo", "--out-dir", str(out), "--name", name, "--epochs", str(epochs),
            "--data.train_subset", "96", "--data.val_subset", "16", "--train.batch_size", "8",
            "--train.log_every", "1", "--student.kwargs", json.dumps(TINY), "--student.input_size", "[3, 16, 16]"]
    if command == "distill":
        args += ["--set", f"teacher={json.dumps(TEACHER)}", "--train.eval_teacher", "false", "--method", "kd"]
    return [*args, *extra]


def cli(*args, capsys=None) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return code, out, err


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train_steps(run: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run / "metrics.jsonl") if r.get("kind") == "train"]


def assert_same_run(ref: Path, run: Path) -> None:
    """The final last.pt (weights, optimizer, schedule) and the logs of two runs are identical."""
    a = torch.load(ref / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)
    assert (a["epoch"], a["step"], a["epoch_step"]) == (b["epoch"], b["step"], b["epoch_step"]) == (2, 24, 0)
    assert a["distiller"].keys() == b["distiller"].keys()
    for key, value in a["distiller"].items():
        assert torch.equal(value, b["distiller"][key]), key
    for k, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][k][name])), (k, name)
    assert a["scheduler"] == b["scheduler"]

    def records(folder):
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in read_metrics(folder / "metrics.jsonl")]

    assert records(ref) == records(run)  # each step logged once, with the same loss


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``ref``: the uninterrupted run. ``half``: the same run stopped after epoch 1 with a checkpoint every
    5 steps, so it holds last.pt (step 12, end of epoch 1) and last.prev.pt (step 10, inside epoch 1)."""
    out = tmp_path_factory.mktemp("runs")
    assert main(run_args(out, "ref")) == 0
    assert main(run_args(out, "half", "--checkpoint-every", "5", "--stop-after-epochs", "1")) == 0
    return out


def copy_run(runs: Path, name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(runs / "half", target)
    return target


# ----------------------------------------------------------------------------- signals

DRIVER = """
import os, sys, time
import torch
torch.set_num_threads(1)
from ofakd.engine import amp as precision
_step = precision.Precision.step
calls = []
def gated_step(self, *args, **kwargs):  # steps after the third wait while the gate file exists
    calls.append(1)
    while len(calls) > 3 and os.path.exists(sys.argv[1]):
        time.sleep(0.02)
    return _step(self, *args, **kwargs)
precision.Precision.step = gated_step
from ofakd.cli import main
sys.exit(main(sys.argv[2:]))
"""


def slow_run_in_child(args, *, sleep: float, log: Path, gate: Path | None = None, gate_after: int = 2,
                      env: dict | None = None) -> int:
    """Fork a training process (the test process's modules, no import cost) running ``ofakd ARGS``
    with a slowed step; its output goes to ``log``. Returns its pid. With ``gate``, every step after the
    first ``gate_after`` of this process waits while that file exists; ``env`` is added to the child's
    environment."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            stream = open(log, "w", buffering=1)  # noqa: SIM115
            sys.stdout = sys.stderr = stream
            os.environ.update(env or {})
            from ofakd.engine import amp as precision

            step = precision.Precision.step
            calls = []

            def slow_step(self, *a, **k):
                time.sleep(sleep)
                calls.append(1)
                while gate is not None and len(calls) > gate_after and gate.exists():
                    time.sleep(0.02)
                return step(self, *a, **k)

            precision.Precision.step = slow_step
            code = main([str(a) for a in args])
            stream.flush()
        except BaseException as err:  # noqa: BLE001 - report anything, then leave
            with contextlib.suppress(Exception):
                print(f"child failed: {err!r}", file=sys.__stderr__)
        finally:
            os._exit(code)
    return pid


def wait_for_step(run: Path, step: int, alive, timeout: float = 180.0) -> None:
    """Poll the run's metrics.jsonl until a train record reaches ``step``; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s >= step for s in train_steps(run)):
            return
        if not alive():
            pytest.fail(f"the training process ended before step {step}")
        time.sleep(0.05)
    pytest.fail(f"no step {step} within {timeout}s")


def child_alive(pid: int) -> bool:
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done:
        raise AssertionError("the training process ended early (see its log)")
    return True


def test_sigterm_saves_a_recovery_checkpoint_and_resume_is_exact(runs, tmp_path, capsys):
    """SIGTERM to a real `python -m ofakd`-style process: exit 75 after a checkpoint inside the epoch;
    --resume then ends exactly where the uninterrupted run ends."""
    run, gate = tmp_path / "run", tmp_path / "gate"
    gate.touch()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(gate), *run_args(tmp_path, "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_step(run, 3, lambda: proc.poll() is None)  # then it waits at step 4's gate
        proc.send_signal(signal.SIGTERM)
        gate.unlink()  # step 4 runs, and the run stops after it
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, err
    assert "Traceback" not in err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("ofakd train: interrupted: SIGTERM received: saved ")
    assert f"--resume {run}" in last_line
    ckpt = load_state(run / "last.pt")
    assert ckpt["epoch"] == 0 and ckpt["epoch_step"] == 4  # stopped inside epoch 1, at the step it was on
    assert ckpt["step"] == ckpt["epoch_step"] == max(train_steps(run))  # at the step boundary
    code, out, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 0, err
    assert f"{ckpt['epoch_step']} steps into epoch 1" in out
    assert_same_run(runs / "ref", run)


def test_sigint_then_sigkill_lose_nothing(runs, tmp_path, capsys):
    """Ctrl-C (SIGINT) saves and exits 75; a SIGKILL saves nothing, so the run resumes from its last
    periodic checkpoint (--checkpoint-every 5) and still ends exactly as the uninterrupted run."""
    run = tmp_path / "run"
    pid = slow_run_in_child(run_args(tmp_path, "run", "--checkpoint-every", "5"), sleep=0.1, log=tmp_path / "1.log")
    wait_for_step(run, 2, lambda: child_alive(pid))
    os.kill(pid, signal.SIGINT)
    _, status = os.waitpid(pid, 0)
    log = (tmp_path / "1.log").read_text()
    assert os.waitstatus_to_exitcode(status) == 75, log
    assert "interrupted: SIGINT received" in log
    first = load_state(run / "last.pt")
    assert 2 <= first["step"] < STEPS_PER_EPOCH

    gate = tmp_path / "gate"  # the resumed run stops before step 18 (however slow this process is), is killed there
    gate.touch()
    pid = slow_run_in_child(["train", "--resume", run], sleep=0.0, log=tmp_path / "2.log", gate=gate,
                            gate_after=17 - first["step"])
    wait_for_step(run, 17, lambda: child_alive(pid))
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    killed = load_state(run / "last.pt")  # whole: atomic replacement
    assert killed["step"] == 15 and killed["epoch"] == 1 and killed["epoch_step"] == 15 - STEPS_PER_EPOCH
    assert load_state(previous_path(run / "last.pt"))["step"] < killed["step"]  # the one before is kept too
    assert max(train_steps(run)) == 17  # steps 16 and 17 were logged, then lost with the process
    assert not list(run.glob(".*tmp*"))

    code, out, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 0, err
    assert_same_run(runs / "ref", run)


def resume_killed_at_a_replace(run: Path, into: str, log: Path) -> None:
    """``--resume RUN`` in a forked process, SIGKILLed inside a checkpoint save: once the temporary file that is
    to become ``into`` (``last.pt``, or ``last.prev.pt``: the backup link) is written and about to be renamed."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            sys.stdout = sys.stderr = open(log, "w", buffering=1)  # noqa: SIM115
            replace = os.replace

            def replace_or_hang(src, dst):
                if Path(dst).name == into:
                    while True:  # the parent kills it here, the temporary file whole and not yet renamed
                        time.sleep(1)
                return replace(src, dst)

            os.replace = replace_or_hang
            main(["train", "--resume", str(run), "--checkpoint-every", "5"])
        finally:
            os._exit(70)
    deadline = time.monotonic() + 180
    while not list(run.glob(f".{into}.tmp-{pid}")):
        assert time.monotonic() < deadline and not os.waitpid(pid, os.WNOHANG)[0], log.read_text()
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.mark.parametrize("into", ["last.pt", "last.prev.pt"])
def test_a_sigkill_inside_a_save_leaves_no_litter_after_resume(runs, tmp_path, capsys, into):
    """A SIGKILL inside a checkpoint save leaves its temporary file (the checkpoint, or the backup's hard link);
    the next --resume of the folder removes it, and still ends exactly as the uninterrupted run."""
    run = copy_run(runs, "run", tmp_path)
    resume_killed_at_a_replace(run, into, tmp_path / "killed.log")
    assert list(run.glob(f".{into}.tmp-*"))  # what the kill left
    code, _, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 0, err
    assert not list(run.glob(".*")), sorted(p.name for p in run.iterdir())
    assert_same_run(runs / "ref", run)


# ----------------------------------------------------------------------------- one writer per run folder


@pytest.mark.parametrize("kind", ["flock", "lease"])
def test_one_writer_per_run_folder(runs, tmp_path, capsys, monkeypatch, kind):
    """A run trains in another process and holds its folder's lock. A second run of the same name, --overwrite
    and --resume of the folder are refused, naming that process, and change nothing there. After a SIGKILL the
    lock is free at once (flock: the kernel let go; a lease: its process is gone) and --resume ends exactly as
    the uninterrupted run: every step logged once."""
    monkeypatch.setenv("OFAKD_LOCK", kind)
    run, gate = tmp_path / "run", tmp_path / "gate"
    gate.touch()
    pid = slow_run_in_child(run_args(tmp_path, "run", "--checkpoint-every", "1"), sleep=0.0, log=tmp_path / "1.log",
                            gate=gate, env={"OFAKD_LOCK": kind})
    try:
        wait_for_step(run, 2, lambda: child_alive(pid))
        while file_problem(run / "last.pt") is not None or load_state(run / "last.pt")["step"] < 2:
            assert child_alive(pid)
            time.sleep(0.05)  # step 2 was logged; its checkpoint follows (then step 3 waits at the gate)
        before = {name: sha(run / name) for name in ("config.yaml", "last.pt")}
        holder = f"is being written by pid {pid} on host {socket.gethostname()}"
        for command in (run_args(tmp_path, "run"), run_args(tmp_path, "run", "--overwrite"), ["train", "--resume", run]):
            code, _, err = cli(*command, capsys=capsys)
            assert code == 2 and len(err.strip().splitlines()) == 1 and holder in err, err
        assert "--overwrite does not delete a folder another process writes" not in err
        assert {name: sha(run / name) for name in before} == before
        assert json.loads((run / "run.lock").read_text())["mode"] == kind
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    code, _, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 0, err
    assert_same_run(runs / "ref", run)
    assert not (run / "run.lock").exists()  # released at the end of the run


def test_overwrite_refuses_a_folder_being_written(tmp_path, capsys):
    from ofakd.run_folder import FolderLock

    out = tmp_path / "out"
    assert cli(*run_args(out, "run", "--epochs", "1"), capsys=capsys)[0] == 0
    before = sha(out / "run" / "last.pt")
    with FolderLock(out / "run" / "run.lock", "run folder"):  # as a run writing there holds it
        code, _, err = cli(*run_args(out, "run", "--overwrite"), capsys=capsys)
    assert code == 2 and f"pid {os.getpid()}" in err and "--overwrite does not delete a folder another" in err
    assert sha(out / "run" / "last.pt") == before


def test_last_pt_that_is_a_folder_is_found_before_training(runs, tmp_path, capsys):
    run = copy_run(runs, "run", tmp_path)
    (run / "last.pt").unlink()
    (run / "last.pt").mkdir()
    code, out, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 2 and f"{run / 'last.pt'} is not a file" in err and "move it away" in err
    assert "epoch" not in out and not (run / "run.lock").exists()


# ----------------------------------------------------------------------------- damaged checkpoints


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [truncate, flip_a_byte], ids=["truncated", "bit-flipped"])
def test_damaged_last_pt_is_reported_and_the_previous_one_used(runs, tmp_path, capsys, damage):
    run = copy_run(runs, "run", tmp_path)
    damage(run / "last.pt")
    assert file_problem(run / "last.pt") is not None  # torch.load alone would take a bit-flipped file
    code, out, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 0, err
    assert f"warning: {run / 'last.pt'} is not a readable checkpoint" in out
    assert f"resuming from the previous checkpoint {run / 'last.prev.pt'} (step 10, 10 steps into epoch 1)" in out
    assert_same_run(runs / "ref", run)  # resumed inside epoch 1 from the periodic checkpoint


def test_rotation_never_replaces_the_good_backup_with_a_damaged_checkpoint(runs, tmp_path, monkeypatch, capsys):
    """last.pt truncated: the run resumes from last.prev.pt and saves four times (steps 12, 15, 20, 24). After
    every rename or link a checkpoint that passes its CRC check exists: the damaged last.pt is replaced, never
    kept as last.prev.pt."""
    run = copy_run(runs, "run", tmp_path)
    truncate(run / "last.pt")
    verified_after = []

    def checked(operation):
        def call(*args, **kwargs):
            result = operation(*args, **kwargs)
            good = [name for name in ("last.pt", "last.prev.pt") if file_problem(run / name) is None]
            assert good, f"no verified checkpoint after {operation.__name__}{args}"
            verified_after.append(good)
            return result
        return call

    monkeypatch.setattr(os, "replace", checked(os.replace))
    monkeypatch.setattr(os, "link", checked(os.link))
    code, out, err = cli("train", "--resume", run, "--checkpoint-every", "5", capsys=capsys)
    assert code == 0, err
    assert "resuming from the previous checkpoint" in out
    assert verified_after[0] == ["last.prev.pt"]  # the first save: last.pt is still the damaged file
    assert load_state(run / "last.pt")["step"] == 24 and load_state(run / "last.prev.pt")["step"] == 20


def test_both_checkpoints_damaged_is_a_clear_error(runs, tmp_path, capsys):
    run = copy_run(runs, "run", tmp_path)
    truncate(run / "last.pt")
    (run / "last.prev.pt").write_bytes(b"")
    code, _, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "last.pt is not a readable checkpoint" in err and "last.prev.pt is not a readable checkpoint: empty" in err
    assert "nothing to resume: start the run again (--overwrite)" in err


def test_a_write_that_does_not_read_back_whole_never_replaces_the_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_state(path, {"epoch": 1, "w": torch.ones(1000)})
    before = sha(path)
    real_save = torch.save

    def save_then_rot(obj, f):  # the bytes on disk differ from what was written (a failing disk)
        real_save(obj, f)
        raw = getattr(f, "file", f)  # the open file under save_state's write wrapper
        raw.flush()
        raw.seek(raw.tell() // 2)
        raw.write(b"\xff\xfe")

    monkeypatch.setattr(torch, "save", save_then_rot)
    with pytest.raises(CheckpointWriteError, match="does not read back whole .*CRC-32.*the previous last.pt is intact"):
        save_state(path, {"epoch": 2, "w": torch.zeros(1000)}, keep_previous=True)
    assert sha(path) == before and sorted(os.listdir(tmp_path)) == ["last.pt"]


@pytest.mark.parametrize("links", [True, False], ids=["hard-link", "no-links"])
def test_keep_previous_rotates(tmp_path, monkeypatch, links):
    if not links:  # a file system without hard links: the previous file is copied
        monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError(errno.EPERM, "no links")))
    path = tmp_path / "last.pt"
    for epoch in (1, 2, 3):
        save_state(path, {"epoch": epoch}, keep_previous=True)
    assert load_state(path)["epoch"] == 3 and load_state(previous_path(path))["epoch"] == 2
    state, used = load_resume_state(path, log=lambda _m: None)
    assert state["epoch"] == 3 and used == path
    assert sorted(os.listdir(tmp_path)) == ["last.prev.pt", "last.pt"]


def test_stop_request_second_signal_stops_at_once():
    from ofakd.engine.preemption import StopRequest

    previous = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous


def test_second_ctrl_c_is_exit_130(tmp_path, monkeypatch, capsys):
    import ofakd.engine as engine

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "fit", interrupted)
    code, _, err = cli(*run_args(tmp_path, "x"), capsys=capsys)
    assert code == 130 and err.strip() == "ofakd train: interrupted at once (a second Ctrl-C); nothing more was saved"


def test_signal_during_evaluation_stops_after_the_epoch_checkpoint(tmp_path, monkeypatch, capsys):
    import ofakd.engine.trainer as trainer

    real = trainer.Trainer._evaluate

    def evaluate_then_signal(self):
        self.stop.request(signal.SIGTERM)  # as if SIGTERM arrived while evaluating
        return real(self)

    monkeypatch.setattr(trainer.Trainer, "_evaluate", evaluate_then_signal)
    run = tmp_path / "run"
    code, _, err = cli(*run_args(tmp_path, "run"), capsys=capsys)
    assert code == 75, err
    assert f"saved {run / 'last.pt'} (step 12, end of epoch 1); continue with --resume {run}" in err
    assert load_state(run / "last.pt")["epoch_step"] == 0 and (run / "summary.json").is_file()


# ----------------------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mounted at tmp_path/disk (root only), unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True,
                       capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"cannot mount a tmpfs here ({err}); the file-size-limit test covers a failing write")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True, timeout=20)


def test_full_disk_keeps_the_old_checkpoint_and_stops_clearly(runs, tmp_path, small_disk, capsys):
    run = copy_run(runs, "run", small_disk)
    before = {name: sha(run / name) for name in ("last.pt", "last.prev.pt", "best.safetensors")}
    used = shutil.disk_usage(small_disk).used
    subprocess.run(["mount", "-o", f"remount,size={used + 96 * 1024}", str(small_disk)], check=True, timeout=20)
    code, _, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 74, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "No space left on device" in err and f"--resume {run}" in err and "free disk space" in err
    assert {name: sha(run / name) for name in before} == before  # nothing saved was lost or changed
    assert load_state(run / "last.pt")["step"] == 12
    assert not list(run.glob(".*tmp*"))  # no half-written temporary file left taking the space
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True, timeout=20)
    code, _, err = cli("train", "--resume", run, capsys=capsys)  # space freed: it carries on, exactly
    assert code == 0, err
    assert_same_run(runs / "ref", run)


def test_file_size_limit_keeps_the_old_checkpoint(runs, tmp_path, capsys):
    """RLIMIT_FSIZE in a child process: writing last.pt fails with EFBIG (exit 74), the old one survives."""
    run = copy_run(runs, "run", tmp_path)
    before = sha(run / "last.pt")
    log = tmp_path / "child.log"
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            sys.stdout = sys.stderr = open(log, "w", buffering=1)  # noqa: SIM115
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (200 * 1024, hard))  # last.pt is ~280 KB
            code = main(["train", "--resume", str(run)])
        except BaseException as err:  # noqa: BLE001
            print(f"child failed: {err!r}")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    text = log.read_text()
    assert os.waitstatus_to_exitcode(status) == 74, text
    line = text.strip().splitlines()[-1]
    assert line.startswith(f"ofakd train: error: cannot write {run / 'last.pt'} (File too large)")
    assert "the previous last.pt is intact" in line and "ulimit -f" in line and f"--resume {run}" in line
    assert sha(run / "last.pt") == before and not list(run.glob(".*tmp*"))
    code, _, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 0, err
    assert_same_run(runs / "ref", run)


def test_write_error_names_the_errno_fix(tmp_path):
    from ofakd.run_folder import write_error

    err = write_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "x.pt")
    assert str(err) == f"cannot write {tmp_path / 'x.pt'} (No space left on device); nothing was replaced; free disk space"
    assert err.exit_code == 74


# ----------------------------------------------------------------------------- non-finite numbers


class Planted:
    """Makes the tensor a hook sees NaN on chosen calls (counted from 1)."""

    def __init__(self, calls):
        self.calls, self.count = set(calls), 0

    def forward(self, module, inputs, output):
        self.count += 1
        return output * float("nan") if self.count in self.calls else None

    def grad(self, grad):
        self.count += 1
        return grad * float("nan") if self.count in self.calls else None


def plant(monkeypatch, where: str, planted: Planted) -> None:
    """Register ``planted`` in every run's models as they are built (teacher output, student output or a
    gradient of the student's first weight)."""
    import ofakd.engine.trainer as trainer

    real = trainer.build_setup

    def build_setup(*args, **kwargs):
        setup = real(*args, **kwargs)
        if where == "teacher":
            setup.teacher.model.register_forward_hook(planted.forward)
        elif where == "student":
            setup.student.register_forward_hook(planted.forward)
        else:
            next(setup.student.parameters()).register_hook(planted.grad)
        return setup

    monkeypatch.setattr(trainer, "build_setup", build_setup)


def finite(state: dict) -> bool:
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def test_nan_loss_stops_naming_step_component_and_checkpoint(tmp_path, monkeypatch, capsys):
    plant(monkeypatch, "teacher", Planted({7}))  # the teacher's logits at step 7: only the kd loss goes NaN
    run = tmp_path / "run"
    code, _, err = cli(*run_args(tmp_path, "run", "--checkpoint-every", "5", command="distill"), capsys=capsys)
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "non-finite loss at epoch 1, step 7: loss component 'kd' is nan (gt=" in err
    assert f"last good checkpoint: {run / 'last.pt'} (step 5, 5 steps into epoch 1)" in err
    assert "train.nonfinite: skip" in err
    ckpt = load_state(run / "last.pt")
    assert ckpt["step"] == 5 and finite(ckpt["distiller"])
    assert max(train_steps(run)) == 6  # the NaN step was never logged as trained


def test_skip_policy_skips_up_to_the_limit(tmp_path, monkeypatch, capsys):
    plant(monkeypatch, "student", Planted({3, 5, 8}))
    run = tmp_path / "run"
    code, out, err = cli(*run_args(tmp_path, "run", "--checkpoint-every", "5", "--set", "train.nonfinite=skip",
                                   "--set", "train.max_skipped_steps=2"), capsys=capsys)
    assert code == 3, err
    assert "step 3: loss component 'gt' is nan" in out and "step skipped (1 of train.max_skipped_steps=2)" in out
    assert "step 5: loss component 'gt' is nan" in out and "step skipped (2 of train.max_skipped_steps=2)" in out
    assert "non-finite loss at epoch 1, step 8" in err and "2 steps were skipped already" in err
    ckpt = load_state(run / "last.pt")
    assert ckpt["step"] == 5 and ckpt["skipped_steps"] == 2 and finite(ckpt["distiller"])
    adam_steps = {float(s["step"]) for s in ckpt["optimizer"]["state"].values()}
    assert adam_steps == {3.0}  # steps 1, 2 and 4 reached the optimizer; 3 and 5 did not


def test_nonfinite_gradient_stops_before_the_weights_change(tmp_path, monkeypatch, capsys):
    planted = Planted({4})
    plant(monkeypatch, "grad", planted)
    run = tmp_path / "run"
    code, _, err = cli(*run_args(tmp_path, "run", "--checkpoint-every", "2"), capsys=capsys)
    assert code == 3, err
    assert "non-finite gradients at epoch 1, step 4: global norm nan from a finite loss (gt=" in err
    assert f"last good checkpoint: {run / 'last.pt'} (step 2, 2 steps into epoch 1)" in err
    assert planted.count == 4 and finite(load_state(run / "last.pt")["distiller"])


# ----------------------------------------------------------------------------- code in checkpoints


class Payload:
    """Unpickling this runs ``exec``: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def evil_file(path: Path, marker: Path, content: dict | None = None) -> Path:
    torch.save({**(content or {}), "epoch": 1, "payload": Payload(marker)}, path)
    return path


def test_the_crafted_payload_is_live(tmp_path):
    """The control: loaded without weights_only, the crafted file does run its code."""
    marker = tmp_path / "ran"
    torch.load(evil_file(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.read_text() == "ran"


def test_resume_refuses_a_last_pt_that_runs_code(runs, tmp_path, capsys):
    run = copy_run(runs, "run", tmp_path)
    marker = tmp_path / "ran"
    good = torch.load(run / "last.pt", weights_only=True)
    evil_file(run / "last.pt", marker, good)  # a whole, loadable-looking last.pt with one extra object
    code, _, err = cli("train", "--resume", run, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"refused to load {run / 'last.pt'}" in err and "could run code" in err and "weights_only" in err
    assert not marker.exists()
    code, _, err = cli("eval", run, "--weights", "last", capsys=capsys)
    assert code == 2 and "refused to load" in err and not marker.exists()


def test_teacher_checkpoint_and_eval_refuse_code(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = evil_file(tmp_path / "teacher.pth", marker)
    code, _, err = cli(*run_args(tmp_path, "x", "--teacher-checkpoint", evil, command="distill"), capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "refused for safety" in err and str(evil) in err and not marker.exists()
    code, _, err = cli("eval", evil, "--model", "test_byobnet", "--config", "demo", "--set", "student.kwargs={}",
                       "--data.val_subset", "8", capsys=capsys)
    assert code == 2 and "refused for safety" in err and not marker.exists()


def test_cache_and_cifar_files_never_unpickle_code(tmp_path, capsys):
    marker = tmp_path / "ran"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_bytes(pickle.dumps(Payload(marker)))
    code, _, err = cli(*run_args(tmp_path, "x", "--teacher-cache", cache, command="distill"), capsys=capsys)
    assert code == 2 and "manifest.json is unreadable" in err and not marker.exists()
    cifar = tmp_path / "cifar" / "cifar-100-python"
    cifar.mkdir(parents=True)
    for name in ("train", "test", "meta"):
        (cifar / name).write_bytes(pickle.dumps({"data": Payload(marker)}))
    code, _, err = cli("train", "--config", "demo", "--data", "cifar100", "--data.root", cifar.parent,
                       "--out-dir", tmp_path, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "refused to read CIFAR file" in err and "builtins.exec" in err and not marker.exists()


# ----------------------------------------------------------------------------- paths


def test_run_names_never_leave_the_out_dir(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "out"
    code, _, err = cli(*run_args(out, "../../../escaped/x", "--epochs", "1", "--data.train_subset", "16"),
                       capsys=capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["escaped-x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and sorted(os.listdir(tmp_path / "a" / "b")) == ["out"]
    from ofakd.run_folder import RunFolder

    assert RunFolder.plan(out, "/etc/passwd").path == out / "etc-passwd"
    (out / "link").symlink_to(tmp_path)
    code, _, err = cli(*run_args(out, "link", "--epochs", "1"), capsys=capsys)
    assert code == 2 and "is a symbolic link" in err
    assert sorted(os.listdir(tmp_path)) == ["a"]


# ----------------------------------------------------------------------------- outputs


def test_eval_json_of_a_nan_head_is_valid_json(runs, tmp_path, capsys):
    """A head that outputs NaN gives a NaN loss: `eval --json` writes null, not the bare NaN json.dumps writes."""
    from ofakd.evaluation import load_student
    from ofakd.run_folder import read_student_metadata, save_weights

    run = copy_run(runs, "run", tmp_path)
    model, _ = load_student(run)
    with torch.no_grad():
        model.get_classifier().bias.fill_(float("nan"))
    save_weights(run / "best.safetensors", model, read_student_metadata(run / "best.safetensors"))
    with pytest.warns(UserWarning, match=r"best.safetensors: the weights hold NaN/inf \(head.bias\).* mean nothing"):
        code, out, err = cli("eval", run, "--json", capsys=capsys)  # named, then evaluated as asked
    assert code == 0, err
    result = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert result["mean_loss"] is None and result["loss"] is None and result["count"] == 16


# ----------------------------------------------------------------------------- integrity of what is read back


def flip_bytes(path: Path, offset: int, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + count):
        data[i] ^= 0x55
    path.write_bytes(bytes(data))


def tensor_data_offset(path: Path) -> int:
    """Where a safetensors file's tensor bytes start (after its 8-byte length and JSON header)."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def test_damaged_best_weights_are_refused_by_eval_export_and_teacher_run(runs, tmp_path, capsys):
    run = copy_run(runs, "run", tmp_path)
    best = run / "best.safetensors"
    flip_bytes(best, tensor_data_offset(best) + 1000)  # 64 bytes of weights: the file still parses
    for argv in (["eval", run], ["eval", best], ["export", run, "--out", tmp_path / "export"],
                 run_args(tmp_path, "student", "--teacher-run", run, command="distill")):
        code, _, err = cli(*argv, capsys=capsys)
        assert code == 2 and len([line for line in err.strip().splitlines() if not line.startswith("note:")]) == 1, err
        assert f"{best} is damaged: its tensors or metadata differ from the sha256" in err
    assert not (tmp_path / "export").exists() and not (tmp_path / "student").exists()


def test_best_weights_of_an_older_ofakd_are_used_with_a_warning(runs, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    run = copy_run(runs, "run", tmp_path)
    best = run / "best.safetensors"
    with safe_open(str(best), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    older = {k: v for k, v in meta.items() if k not in ("ofakd_sha256", "ofakd_format")}  # before hashes: neither
    save_file(tensors, str(best), metadata=older)
    with pytest.warns(UserWarning, match="carries no content hash .written by an older ofakd.: it is used unchecked"):
        code, _, err = cli("eval", run, capsys=capsys)
    assert code == 0, err


def test_a_damaged_timm_export_is_refused(runs, tmp_path, capsys):
    export = tmp_path / "export"
    code, _, err = cli("export", runs / "half", "--out", export, capsys=capsys)
    assert code == 0, err
    recorded = json.loads((export / "config.json").read_text())["ofakd"]["exports"]["timm"]["sha256"]
    assert recorded == {name: sha(export / name) for name in ("model.safetensors", "README.md")}
    code, out, err = cli("eval", export, "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["count"] > 16, err  # an export evaluates the whole split
    weights = export / "model.safetensors"
    flip_bytes(weights, tensor_data_offset(weights) + 1000)
    code, _, err = cli("eval", export, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{weights} is damaged: its sha256 differs from the one config.json records" in err
