"""Teacher-output cache: exact replay, top-k reconstruction, manifest checks, integrity, resume, CLI."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ofakd
from ofakd.cache import (
    CachedTeacher,
    CacheError,
    CacheMismatchError,
    TeacherCache,
    encode_topk,
    reconstruct_topk,
    record_cache,
)
from ofakd.cache.topk import TAIL_FLOOR
from ofakd.config import load_config
from ofakd.data import build_data
from ofakd.distill import get_method
from ofakd.errors import TeacherFeaturesError
from ofakd.models import ModelOutput
from ofakd.models.info import InputSpec

TINY_VIT = {
    "img_size": 32,
    "patch_size": 8,
    "depth": 2,
    "embed_dim": 32,
    "num_heads": 2,
    "drop_path_rate": 0.1,
}
"""The student: a tiny ViT whose drop-path draws from the global generator every step."""
STRONG = {"auto_augment": "rand-m9-mstd0.5-inc1", "reprob": 0.25, "mixup": 0.8, "cutmix": 1.0}
"""RandAugment, random erasing, mixup and cutmix on (plus the demo recipe's label smoothing)."""


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A resnet18 teacher with logits of a realistic size (a few units), saved as a checkpoint."""
    torch.manual_seed(0)
    teacher = ofakd.create_model("resnet18", num_classes=10)
    with torch.no_grad():
        teacher.fc.weight.mul_(40)
    path = tmp_path_factory.mktemp("teacher") / "resnet18.pth"
    torch.save(teacher.state_dict(), path)
    return path


def make_cfg(teacher_file, out_dir=None, *extra):
    overrides = [
        ("data.train_subset", 64),
        ("data.val_subset", 32),
        ("train.batch_size", 16),
        ("train.epochs", 2),
        ("train.log_every", 1),
        ("train.device", "cpu"),
        ("train.amp", "none"),
        ("teacher", {"name": "resnet18", "checkpoint": str(teacher_file), "input_size": [3, 32, 32]}),
        ("student", {"name": "vit_tiny_patch16_224", "kwargs": TINY_VIT, "input_size": [3, 32, 32]}),
        *[(f"augment.{k}", v) for k, v in STRONG.items()],
    ]
    if out_dir is not None:
        overrides.append(("run.out_dir", str(out_dir)))
    return load_config("demo", overrides + list(extra))


QUIET = {"log": lambda _msg: None}


@pytest.fixture(scope="module")
def full_cache(tmp_path_factory, teacher_file):
    out = tmp_path_factory.mktemp("caches") / "full"
    return record_cache(make_cfg(teacher_file), out, **QUIET)


def files_of(directory) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------- the recording


def test_recording_holds_the_teachers_logits_of_the_run_views(full_cache, teacher_file):
    """Rows are the teacher's fp16 logits of exactly the batches `build_data` gives rank 0, in order."""
    cache = full_cache
    m = cache.manifest
    assert (m["storage"], m["k"], m["epochs"], m["world_size"], m["batch_size"], m["steps_per_epoch"]) == (
        "full",
        10,
        2,
        1,
        16,
        4,
    )
    assert m["teacher"]["num_features"] == 512 and m["teacher"]["name"] == "resnet18"
    assert (
        m["teacher"]["checkpoint_sha256"]
        == __import__("hashlib").sha256(teacher_file.read_bytes()).hexdigest()
    )
    assert m["transforms"]["auto_augment"] == STRONG["auto_augment"] and "smoothing" not in m["transforms"]
    teacher = ofakd.create_model("resnet18", num_classes=10, checkpoint=teacher_file).eval()
    vit_mean = m["student_input"]["mean"]
    bundle = build_data(
        make_cfg(teacher_file).data,
        make_cfg(teacher_file).augment,
        input_size=(3, 32, 32),
        mean=vit_mean,
        std=m["student_input"]["std"],
        batch_size=16,
        seed=42,
        with_indices=True,
    )
    from ofakd.models import input_spec
    from ofakd.teacher import teacher_adapter

    adapter = teacher_adapter(
        InputSpec((3, 32, 32), tuple(vit_mean), tuple(m["student_input"]["std"])),
        InputSpec((3, 32, 32), *(tuple(v) for v in (m["teacher"]["mean"], m["teacher"]["std"]))),
    )
    assert adapter is not None and tuple(m["teacher"]["mean"]) == input_spec(teacher).mean  # re-normalised
    bundle.train_sampler.set_epoch(1)
    for step, (images, targets, indices) in enumerate(bundle.train_loader):
        with torch.no_grad():
            live = teacher(adapter(images))
        stored = cache.read(1, step)
        assert torch.equal(stored, live.half().float())
        raw = cache.read_numpy(1, step)
        assert raw["index"].tolist() == indices.tolist()
        assert targets.shape == (16, 10)  # mixup/cutmix was on
    assert float(live.abs().max()) > 1.0  # logits large enough for fp16 rounding to matter


# ----------------------------------------------------------------------------- top-k


def test_topk_reconstruction_keeps_topk_and_spreads_the_rest():
    torch.manual_seed(1)
    logits = torch.randn(6, 12) * 3
    values, indices, lse = encode_topk(logits, 4)
    assert values.dtype == np.float16 and indices.dtype == np.int32 and lse.dtype == np.float32
    z = reconstruct_topk(values, indices, lse, 12)
    assert z.shape == (6, 12) and z.dtype == torch.float32
    p = F.softmax(z.double(), dim=1)
    idx = torch.from_numpy(indices).long()
    # the recorded classes carry the recorded logits and their full-distribution probabilities
    assert torch.equal(z.gather(1, idx), torch.from_numpy(values).float())
    recorded_p = torch.exp(torch.from_numpy(values).double() - torch.from_numpy(lse).double()[:, None])
    torch.testing.assert_close(p.gather(1, idx), recorded_p, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        p.gather(1, idx), F.softmax(logits.double(), 1).gather(1, idx), rtol=3e-3, atol=1e-4
    )
    # the rest of the mass, 1 - sum(top-k), spread evenly over the 8 other classes
    rest = torch.ones_like(p, dtype=torch.bool).scatter(1, idx, False)
    tail = p[rest].view(6, 8)
    torch.testing.assert_close(
        tail, ((1 - recorded_p.sum(1)) / 8)[:, None].expand(6, 8), rtol=1e-5, atol=1e-8
    )
    torch.testing.assert_close(p.sum(1), torch.ones(6, dtype=torch.float64))
    assert torch.all(p.gather(1, idx).min(1).values >= tail.max(1).values)


def test_topk_tail_is_floored_when_the_top_k_hold_all_the_mass():
    logits = torch.tensor([[60.0, 0.0, -1.0, -2.0]])  # fp16 rounding leaves no mass for the tail
    z = reconstruct_topk(*encode_topk(logits, 1), 4)
    assert torch.isfinite(z).all() and z[0, 0] == 60.0
    p = F.softmax(z.double(), 1)
    assert float(p[0, 1]) == pytest.approx(TAIL_FLOOR, rel=1e-3)
    kl = F.kl_div(
        F.log_softmax(torch.zeros(1, 4), 1), F.log_softmax(z, 1), log_target=True, reduction="batchmean"
    )
    assert torch.isfinite(kl)


def test_topk_cache_from_the_cli_matches_the_full_cache(full_cache, teacher_file, tmp_path, ofakd_cli):
    out = tmp_path / "top3"
    code, stdout, err = ofakd_cli(
        "cache",
        "record",
        "--config",
        "demo",
        "--teacher",
        "resnet18",
        "--teacher-checkpoint",
        teacher_file,
        "--teacher.input_size",
        "[3, 32, 32]",
        "--student",
        "vit_tiny_patch16_224",
        "--student.kwargs",
        json.dumps(TINY_VIT),
        "--student.input_size",
        "[3, 32, 32]",
        "--data.train_subset",
        "64",
        "--data.val_subset",
        "32",
        "--train.batch_size",
        "16",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--train.amp",
        "none",
        *[a for k, v in STRONG.items() for a in (f"--augment.{k}", str(v))],
        "--topk",
        "3",
        "--out",
        out,
    )
    assert code == 0, err
    assert "2/2 epochs recorded" in stdout
    top = TeacherCache(out)
    assert top.storage == "topk" and top.k == 3 and top.manifest["dataset"] == full_cache.manifest["dataset"]
    for epoch, step in ((0, 0), (1, 3)):
        full = full_cache.read(epoch, step)  # fp16 logits of the same views
        raw = top.read_numpy(epoch, step)
        assert np.array_equal(raw["index"], full_cache.read_numpy(epoch, step)["index"])
        order = full.topk(3, dim=1).indices
        assert torch.equal(torch.from_numpy(raw["indices"]).long().sort(1).values, order.sort(1).values)
        assert torch.equal(top.read(epoch, step).gather(1, order), full.gather(1, order))
        torch.testing.assert_close(
            torch.from_numpy(raw["lse"]), torch.logsumexp(full, 1), rtol=2e-3, atol=2e-3
        )
    # info: manifest and sizes (3 x fp16 + 3 x int32 + lse + index + check = 30 bytes per view)
    code, stdout, _ = ofakd_cli("cache", "info", out)
    assert code == 0
    assert '"storage": "topk"' in stdout and '"k": 3' in stdout and '"fingerprint"' in stdout
    assert "per sample (view): 30 bytes" in stdout and "per epoch: 1.9 KiB (64 views" in stdout
    assert "recorded: 2/2 epochs complete" in stdout
    code, stdout, _ = ofakd_cli("cache", "info", out, "--json")
    info = json.loads(stdout)
    assert info["sizes"]["bytes_per_view"] == 30 and info["sizes"]["bytes_per_epoch"] == 30 * 64
    assert info["completed_epochs"] == [0, 1] and info["manifest"]["teacher"]["num_classes"] == 10
    full_sizes = full_cache.sizes()
    assert full_sizes["bytes_per_view"] == 10 * 2 + 8 and full_sizes["bytes_per_epoch"] == 28 * 64


# ----------------------------------------------------------------------------- manifest checks


def recorded_spec(cache) -> InputSpec:
    m = cache.manifest["student_input"]
    return InputSpec(tuple(m["input_size"]), tuple(m["mean"]), tuple(m["std"]))


def check(cache, cfg, *, fingerprint=None, views=None, spec=None, world_size=1, **kw):
    spec = spec or recorded_spec(cache)
    cache.check_run(
        cfg,
        fingerprint=fingerprint or cache.manifest["dataset"]["fingerprint"],
        views=views or cache.manifest["dataset"]["views"],
        student_spec=spec,
        world_size=world_size,
        **kw,
    )


def mismatch(cache, cfg, **kw) -> CacheMismatchError:
    with pytest.raises(CacheMismatchError) as err:
        check(cache, cfg, **kw)
    assert "\n" not in str(err.value)
    return err.value


def test_each_manifest_mismatch_names_field_recorded_and_requested(full_cache, teacher_file, tmp_path):
    cache = full_cache
    spec = recorded_spec(cache)
    good = make_cfg(teacher_file)
    check(cache, good)  # the recording's own settings pass
    check(cache, make_cfg(teacher_file, None, ("teacher", {})))  # a cache may stand in for an unnamed teacher

    other = tmp_path / "other.pth"
    other.write_bytes(teacher_file.read_bytes() + b"x")
    other_fp = build_data(
        good.data.model_copy(update={"train_subset": 48}),
        good.augment,
        input_size=(3, 32, 32),
        mean=spec.mean,
        std=spec.std,
        batch_size=16,
        seed=0,
    ).fingerprint
    cases = [
        ("teacher.name", dict(cfg=[("teacher.name", "resnet34")]), "'resnet18'", "'resnet34'"),
        (
            "teacher.checkpoint_sha256",
            dict(cfg=[("teacher.checkpoint", str(other))]),
            cache.manifest["teacher"]["checkpoint_sha256"][:12],
            None,
        ),
        (
            "dataset.fingerprint",
            dict(fingerprint=other_fp),
            cache.manifest["dataset"]["fingerprint"],
            other_fp,
        ),
        ("dataset.views", dict(views="batched"), "'per_image'", "'batched'"),
        ("transforms.reprob", dict(cfg=[("augment.reprob", 0.5)]), "0.25", "0.5"),
        (
            "transforms.auto_augment",
            dict(cfg=[("augment.auto_augment", None)]),
            "'rand-m9-mstd0.5-inc1'",
            "null",
        ),
        (
            "student_input.input_size",
            dict(spec=InputSpec((3, 16, 16), spec.mean, spec.std)),
            "[3, 32, 32]",
            "[3, 16, 16]",
        ),
        ("data_seed", dict(cfg=[("train.data_seed", 7)]), "42", "7"),
        ("batch_size", dict(cfg=[("train.batch_size", 8)]), "16", "8"),
        ("world_size", dict(world_size=2), "1", "2"),
        ("epochs", dict(cfg=[("train.epochs", 3)]), "2", "3"),
    ]
    for field, change, recorded, requested in cases:
        cfg = make_cfg(teacher_file, None, *change.pop("cfg", []))
        err = mismatch(cache, cfg, spec=change.pop("spec", spec), **change)
        msg = str(err)
        assert err.field == field and f" {field} was " in msg, msg
        assert recorded in msg and (requested is None or requested in msg), msg
    # running past the recorded epochs is fine when asked to cycle them
    check(cache, make_cfg(teacher_file, None, ("train.epochs", 5)), spec=spec, cycle=True)
    assert [cache.data_epoch(e, cycle=True) for e in range(5)] == [0, 1, 0, 1, 0]
    with pytest.raises(CacheMismatchError, match="epochs was 2 when recorded but is 3"):
        cache.data_epoch(2)
    # smoothing and the validation crop do not change a view: no mismatch
    check(
        cache, make_cfg(teacher_file, None, ("augment.smoothing", 0.3), ("augment.crop_pct", 0.9)), spec=spec
    )


def test_methods_that_need_teacher_features_refuse_a_cache(full_cache, teacher_file):
    cfg = make_cfg(teacher_file)
    student = ofakd.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT)
    for method in ("fitnet", "ofa+rkd", "pat"):
        assert get_method(method).needs_teacher_features
        with pytest.raises(TeacherFeaturesError, match=f"method '{re.escape(method)}' needs teacher features.*drop "
                                                       "--teacher-cache"):
            ofakd.create_distiller(method, CachedTeacher(full_cache), student)
    for method in ("ofa", "kd", "dkd", "dist", "ofa+kd"):
        assert not get_method(method).needs_teacher_features
        check(full_cache, cfg, method=get_method(method))
    with pytest.raises(CacheError, match="uses no teacher"):
        check(full_cache, cfg, method=get_method("vanilla"))


def test_every_logit_method_trains_from_the_cache_without_a_teacher(full_cache, teacher_file):
    from ofakd.distill import list_methods

    cache, cfg = full_cache, make_cfg(teacher_file)
    logit_methods = [
        m for m in list_methods() if get_method(m).needs_teacher and not get_method(m).needs_teacher_features
    ]
    assert {"ofa", "kd", "dkd", "dist"} <= set(logit_methods)
    torch.manual_seed(0)
    images, targets = torch.randn(16, 3, 32, 32), F.softmax(torch.randn(16, 10), 1)
    for method in [*logit_methods, "ofa+dkd"]:
        cls = get_method(method)
        check(cache, cfg, method=cls)
        student = ofakd.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT)
        teacher = CachedTeacher(cache)
        distiller = ofakd.create_distiller(method, teacher, student)  # sized by the recording
        assert distiller.teacher is teacher
        _, losses = distiller.distill(images, targets, ModelOutput(cache.read(0, 0)))
        total = sum(losses.values())
        assert torch.isfinite(total), method
        total.backward()
    # OFA's branches are sized by the recorded teacher width exactly as with the live teacher
    cnn = ofakd.create_model("resnet18", num_classes=10)
    cached = ofakd.create_distiller("ofa", CachedTeacher(cache), cnn)
    teacher = ofakd.create_model("resnet18", num_classes=10, checkpoint=teacher_file)
    live = ofakd.create_distiller("ofa", teacher=teacher, student=cnn)
    shapes = {k: v.shape for k, v in live.branches.state_dict().items()}
    assert shapes == {k: v.shape for k, v in cached.branches.state_dict().items()}
    with pytest.raises(CacheMismatchError, match="teacher.num_features was 512 when recorded but is 64"):
        check(cache, make_cfg(teacher_file, None, ("method", {"name": "ofa", "teacher_dim": 64})))


def test_a_timm_task_replays_the_cache_in_recorded_order(full_cache):
    """``ofakd.timm_task`` with a cache's replay as the teacher: each call takes the next recorded batch's logits."""
    student = ofakd.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_VIT)
    teacher = CachedTeacher(full_cache)
    teacher.start_epoch(0, step=1)  # (step 0 also checks the views' mean pixels: these images are not the views)
    task = ofakd.timm_task("kd", teacher=teacher, student=student, temperature=2.0, verbose=False).eval()
    torch.manual_seed(0)
    images, targets = torch.randn(full_cache.batch_size, 3, 32, 32), torch.randint(0, 10, (full_cache.batch_size,))
    for step in (1, 2):
        result = task(images, targets)
        _, expected = task.distiller.distill(images, targets, ModelOutput(full_cache.read(0, step)))
        torch.testing.assert_close(result["kd_loss"], expected["kd"], rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- integrity and resume


def test_truncated_or_missing_cache_files_are_detected(full_cache, teacher_file, tmp_path, ofakd_cli):
    copy = tmp_path / "copy"
    shutil.copytree(full_cache.directory, copy)
    victim = copy / "epoch_0001.logits.f16"
    victim.write_bytes(victim.read_bytes()[:-7])
    cache = TeacherCache(copy)
    with pytest.raises(CacheError) as err:
        cache.verify()
    assert (
        str(victim) in str(err.value)
        and "truncated" in str(err.value)
        and "1273 bytes, expected 1280" in str(err.value)
    )
    with pytest.raises(CacheError, match="truncated"):
        cache.read(1, 0)
    assert cache.read(0, 0).shape == (16, 10)  # the other epoch is whole
    code, stdout, _ = ofakd_cli("cache", "info", copy)
    assert code == 1 and "damaged:" in stdout and "truncated" in stdout
    # recording again with the same arguments repairs exactly that epoch
    recorded = []
    record_cache(make_cfg(teacher_file), copy, on_step=lambda e, r, s: recorded.append(e), **QUIET)
    assert set(recorded) == {1}
    assert files_of(copy) == files_of(full_cache.directory)
    # a block never finished (no marker) is not served
    (copy / "done" / "epoch_0000.rank_0000").unlink()
    with pytest.raises(CacheError, match="epoch 0 rank 0 was not recorded"):
        TeacherCache(copy).verify()
    with pytest.raises(CacheError, match="has no manifest.json"):
        TeacherCache(tmp_path)


def test_flipped_bytes_are_found_when_a_block_is_first_read(full_cache, teacher_file, tmp_path, ofakd_cli):
    """64 flipped bytes of logits (or of view indices) in a whole-sized file: the block's sha256 finds them when
    a run first reads that block (epoch 1 here: epoch 0 trains), and `cache info --verify` finds them up front."""
    from ofakd.engine import fit

    copy = tmp_path / "copy"
    shutil.copytree(full_cache.directory, copy)
    victim = copy / "epoch_0001.logits.f16"
    data = bytearray(victim.read_bytes())
    data[100:164] = bytes(b ^ 0x55 for b in data[100:164])
    victim.write_bytes(bytes(data))
    damaged = f"{victim}: the rows of rank 0 differ from the sha256 recorded with them"
    code, _, err = ofakd_cli("cache", "info", copy, "--verify")
    assert code == 2 and damaged in err and len(err.strip().splitlines()) == 1
    assert ofakd_cli("cache", "info", copy)[0] == 0  # sizes alone look whole
    cfg = make_cfg(teacher_file, tmp_path, ("method", {"name": "kd"}), ("run.name", "r"), ("teacher.cache", str(copy)))
    with pytest.raises(CacheError, match=f"{damaged}.*delete {copy / 'done' / 'epoch_0001.rank_0000'}"):
        fit(cfg, progress=False, tensorboard=False, log=lambda _msg: None)
    assert torch.load(tmp_path / "r" / "last.pt", weights_only=True)["epoch"] == 1  # epoch 0 trained and saved
    (copy / "done" / "epoch_0001.rank_0000").unlink()  # as the message says: that block is recorded again
    record_cache(make_cfg(teacher_file), copy, **QUIET)
    assert files_of(copy) == files_of(full_cache.directory)
    indices = copy / "epoch_0000.index.i32"
    data = bytearray(indices.read_bytes())
    data[0] ^= 0x01
    indices.write_bytes(bytes(data))
    with pytest.raises(CacheError, match=f"{indices}: the rows of rank 0 differ"):
        TeacherCache(copy).read_numpy(0, 0)


def test_impossible_values_in_an_unhashed_cache_are_errors(teacher_file, tmp_path):
    """A cache of an older ofakd (markers without sha256) is read with a warning; an out-of-range top-k class
    index or a NaN logit in it is a clear error, not an IndexError or a NaN loss."""
    cache = record_cache(make_cfg(teacher_file), tmp_path / "topk", topk=3, **QUIET)
    for marker in (tmp_path / "topk" / "done").iterdir():
        marker.write_text("32\n")  # the format before hashes: version 1
    manifest = json.loads((tmp_path / "topk" / "manifest.json").read_text())
    (tmp_path / "topk" / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    indices = np.memmap(tmp_path / "topk" / "epoch_0000.topk_indices.i32", dtype=np.int32, mode="r+", shape=(32, 3))
    indices[5, 1] = 70000
    indices.flush()
    values = np.memmap(tmp_path / "topk" / "epoch_0001.topk_values.f16", dtype=np.float16, mode="r+", shape=(32, 3))
    values[20, 0] = np.nan
    values.flush()
    del indices, values
    cache = TeacherCache(tmp_path / "topk")
    older = pytest.warns(UserWarning, match="recorded by an older ofakd: its blocks carry no sha256")
    outside = pytest.raises(CacheError, match=r"epoch_0000.topk_indices.i32 holds class index 70000 at epoch 0, "
                                              r"step 0, rank 0, outside 0..9; the cache is damaged")
    with older, outside:
        cache.read(0, 0)
    assert cache.read(0, 1).shape == (16, 10)
    with pytest.raises(CacheError, match=r"epoch_0001.topk_values.f16 holds NaN/inf at epoch 1, step 1, rank 0"):
        cache.read(1, 1)
    with pytest.raises(CacheError, match=r"cannot be verified: it was recorded by an older ofakd \(format version 1\)"):
        cache.verify(hashes=True)  # never "verified" for blocks without a hash


def test_resumed_and_split_recording_equals_an_uninterrupted_one(teacher_file, tmp_path):
    """World size 2: one process records everything; another is killed mid-block, then rank 1
    is recorded alone (as a second torchrun process would), then the rest resumes."""
    cfg = make_cfg(teacher_file)
    whole = record_cache(cfg, tmp_path / "whole", world_size=2, **QUIET)
    assert whole.manifest["views_per_epoch"] == 64 and whole.steps_per_epoch == 2

    def crash(epoch, rank, step):
        if (epoch, rank, step) == (1, 0, 0):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        record_cache(cfg, tmp_path / "split", world_size=2, ranks=[0], on_step=crash, **QUIET)
    part = TeacherCache(tmp_path / "split")
    assert part.is_done(0, 0) and not part.is_done(1, 0) and part.completed_epochs() == []
    seen = []
    record_cache(
        cfg, tmp_path / "split", world_size=2, ranks=[1], on_step=lambda *k: seen.append(k[:2]), **QUIET
    )
    assert sorted(set(seen)) == [(0, 1), (1, 1)]
    seen.clear()
    record_cache(cfg, tmp_path / "split", world_size=2, on_step=lambda *k: seen.append(k[:2]), **QUIET)
    assert sorted(set(seen)) == [(1, 0)]  # only the interrupted block
    assert files_of(tmp_path / "split") == files_of(tmp_path / "whole")
    # each rank's rows are that rank's views: its sampler's dataset indices, in order
    bundle = build_data(
        cfg.data,
        cfg.augment,
        input_size=(3, 32, 32),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        batch_size=16,
        seed=42,
        world_size=2,
        rank=1,
    )
    bundle.train_sampler.set_epoch(1)
    expected = list(bundle.train_sampler)[:32]
    got = np.concatenate([whole.read_numpy(1, s, rank=1)["index"] for s in range(2)]).tolist()
    assert got == expected
    # the same folder with other settings is refused, naming the field
    with pytest.raises(CacheMismatchError, match=r"batch_size was 16 when recorded but is 8.*--overwrite"):
        record_cache(
            make_cfg(teacher_file, None, ("train.batch_size", 8)), tmp_path / "split", world_size=2, **QUIET
        )


def test_a_rank_being_recorded_is_not_recorded_twice(teacher_file, tmp_path):
    """Each recorded rank is locked (one recorder per rank): a second recorder of a rank at work stops naming
    it, before writing anything; the other rank can be recorded beside it (as torchrun's processes do)."""
    from ofakd.run_folder import FolderLock, FolderLocked

    out = tmp_path / "cache"
    (out / "locks").mkdir(parents=True)
    with FolderLock(out / "locks" / "rank_0001.lock", "rank 1 at work"):
        with pytest.raises(FolderLocked, match=rf"teacher cache {out} \(rank 1\) is being written by pid"):
            record_cache(make_cfg(teacher_file), out, world_size=2, overwrite=True, **QUIET)
        assert sorted(p.name for p in out.iterdir()) == ["locks"]
        record_cache(make_cfg(teacher_file), out, world_size=2, ranks=[0], **QUIET)
    assert not list(out.glob("locks/*"))  # released: no lock file is left
    assert TeacherCache(out).is_done(1, 0) and not TeacherCache(out).is_done(1, 1)


# ----------------------------------------------------------------------------- distillation from a cache


def train_losses(run_dir) -> list[dict[str, float]]:
    from ofakd.run_folder import read_metrics

    return [
        {"loss": r["loss"], **r["losses"]}
        for r in read_metrics(run_dir / "metrics.jsonl")
        if r["kind"] == "train"
    ]


@pytest.mark.parametrize("method", ["ofa", "kd"])
def test_cached_run_losses_equal_the_live_run_step_by_step(
    method, full_cache, teacher_file, tmp_path, monkeypatch
):
    """RandAugment, random erasing, mixup/cutmix, label smoothing and a drop-path student: every loss of
    every step of a run from the fp16 cache equals the live run's, within fp16 rounding of the logits."""
    from ofakd.engine import fit
    from ofakd.engine import setup as engine_build

    epochs = 3 if method == "kd" else 2
    common = [("method", {"name": method}), ("train.epochs", epochs)]
    quiet = {"progress": False, "tensorboard": False, "log": lambda _msg: None}
    fit(make_cfg(teacher_file, tmp_path, *common, ("run.name", "live")), **quiet)

    def no_teacher(*_args, **_kwargs):
        raise AssertionError("a run from a teacher cache must not build the teacher")

    monkeypatch.setattr(engine_build, "build_teacher_model", no_teacher)
    read = []
    real_reader = TeacherCache.epoch_reader
    monkeypatch.setattr(
        TeacherCache, "epoch_reader", lambda self, e, *a, **k: read.append(e) or real_reader(self, e, *a, **k)
    )
    cached_cfg = make_cfg(
        teacher_file,
        tmp_path,
        *common,
        ("run.name", "cached"),
        ("teacher.cache", str(full_cache.directory)),
        ("teacher.cache_cycle", epochs > 2),
    )
    summary = fit(cached_cfg, **quiet)
    assert summary["complete"]
    live, cached = train_losses(tmp_path / "live"), train_losses(tmp_path / "cached")
    assert len(live) == len(cached) == 4 * epochs
    assert set(live[0]) == set(cached[0]) and (
        method != "ofa" or {"ofa_s1", "ofa_s4", "kd", "gt"} <= set(live[0])
    )
    recorded_steps = 8
    for step, (a, b) in enumerate(zip(live[:recorded_steps], cached[:recorded_steps])):
        for name in a:
            assert b[name] == pytest.approx(a[name], rel=5e-4, abs=5e-4), (step, name, a[name], b[name])
    assert read == [e % 2 for e in range(epochs)]  # past the recording, the cycle replays epoch 0
    if epochs > 2:  # the replayed epoch is epoch 0's views, not the live run's third epoch
        assert any(abs(a["kd"] - b["kd"]) > 1e-2 for a, b in zip(live[8:], cached[8:]))


BATCHED_AUGMENT = [("augment.auto_augment", None), ("augment.color_jitter", 0.0), ("augment.interpolation", "random")]
"""The same recipe without RandAugment and colour jitter: random-resized crops with random interpolation, flips,
erasing, mixup/cutmix and smoothing, all on the batched path."""


@pytest.mark.parametrize("path", ["per_image", "batched"])
def test_a_bf16_teacher_from_the_cache_trains_the_same_student_as_live(teacher_file, tmp_path, path):
    """The recorder calls the same live teacher a run builds (input view, precision, folded BatchNorms) over the
    same views, so with ``teacher.amp: bf16`` the cached logits are the live ones and the students end the same,
    bit for bit, on either data path."""
    from ofakd.engine import fit

    common = [("method", {"name": "kd"}), ("teacher.amp", "bf16"), ("data.loader", path),
              *(BATCHED_AUGMENT if path == "batched" else [])]
    cache = record_cache(make_cfg(teacher_file, None, *common), tmp_path / "cache", **QUIET)
    assert cache.manifest["precision"] == "bf16" and cache.manifest["dataset"]["views"] == path
    quiet = {"progress": False, "tensorboard": False, "log": lambda _msg: None}
    fit(make_cfg(teacher_file, tmp_path, *common, ("run.name", "live")), **quiet)
    fit(make_cfg(teacher_file, tmp_path, *common, ("run.name", "cached"), ("teacher.cache", str(cache.directory))),
        **quiet)
    live, cached = (torch.load(tmp_path / name / "last.pt", weights_only=True)["distiller"] for name in ("live", "cached"))
    assert live.keys() == cached.keys()
    for key in live:
        assert torch.equal(live[key], cached[key]), key


def test_a_mismatched_cache_stops_the_run_before_its_first_step(full_cache, teacher_file, tmp_path):
    from ofakd.engine import fit

    quiet = {"progress": False, "tensorboard": False, "log": lambda _msg: None}
    for extra, field in (
        (("train.batch_size", 8), "batch_size"),
        (("train.epochs", 3), "epochs"),
        (("method", {"name": "fitnet"}), None),
    ):
        cfg = make_cfg(
            teacher_file,
            tmp_path,
            extra,
            ("run.name", f"bad-{field}"),
            ("teacher.cache", str(full_cache.directory)),
        )
        with pytest.raises(CacheError) as err:
            fit(cfg, **quiet)
        assert field is None or f" {field} was " in str(err.value)
        assert train_losses(tmp_path / f"bad-{field}") == []


def test_a_recording_removes_what_a_killed_recorder_left(teacher_file, tmp_path):
    """The temporary files a recorder SIGKILLed mid-write leaves (the manifest's, a block marker's) are removed by the
    next recording of the folder, each by the holder of the lock that guards that file (issue 29, point 4)."""
    out = tmp_path / "cache"
    record_cache(make_cfg(teacher_file), out, **QUIET)
    left = [out / ".manifest.json.tmp-999999", out / "done" / ".epoch_0000.rank_0000.tmp-999999"]
    for path in left:
        path.write_text("{")
    record_cache(make_cfg(teacher_file), out, **QUIET)  # resumed: every block was recorded already
    assert not any(path.exists() for path in left)
    assert sorted(p.name for p in out.rglob(".*")) == []
