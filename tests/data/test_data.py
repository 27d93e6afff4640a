"""Data layer: sources, transforms, seeding, sampling, errors (all data written by the tests)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pydantic
import pytest
import torch
from PIL import Image

from ofakd.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    AugmentConfig,
    DataConfig,
    build_data,
    dataset_num_classes,
    seed_everything,
)
from ofakd.errors import ConfigError, DataError

ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
# deterministic training transform: plain resize, no flip, no jitter
PLAIN = AugmentConfig(train_resize_only=True, hflip=0.0, color_jitter=0.0)


def build(data: DataConfig, augment: AugmentConfig = PLAIN, size: int = 32, channels: int = 3, **kw):
    kw.setdefault("batch_size", 8)
    kw.setdefault("seed", 0)
    mean, std = kw.pop("mean", ZERO[:channels]), kw.pop("std", ONE[:channels])
    return build_data(data, augment, input_size=(channels, size, size), mean=mean, std=std, **kw)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor in [0, 1] (mean 0, std 1) -> (H, W, C) uint8."""
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------- digits


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_digits_counts_classes_and_shape(channels, size):
    b = build(DataConfig(name="digits"), channels=channels, size=size, batch_size=16)
    assert len(b.train_loader.dataset) == 1438 and len(b.val_loader.dataset) == 359
    assert b.num_classes == 10 == dataset_num_classes(DataConfig(name="digits"))
    assert b.class_names == [str(i) for i in range(10)]
    x, y = next(iter(b.train_loader))
    assert x.shape == (16, channels, size, size) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) <= 9
    xv, _ = next(iter(b.val_loader))
    assert xv.shape == (16, channels, size, size)
    # digits are white strokes on black: the corner is black, values span [0, 1]
    assert float(xv.min()) == 0.0 and 0.9 < float(xv.max()) <= 1.0
    assert set(np.unique(b.val_loader.dataset.targets)) == set(range(10))
    assert len(b.train_loader) == 1438 // 16  # drop_last on train
    assert len(b.val_loader) == -(-359 // 16)  # val keeps the last partial batch


def test_digits_raw_data_and_stratified_split():
    from ofakd.data.sources.digits import _read_digits, split_indices

    images, targets = _read_digits()
    counts = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert images.shape == (1797, 8, 8) and np.bincount(targets).tolist() == counts
    assert images[0, 1].tolist() == [0, 0, 13, 15, 10, 15, 5, 0] and targets[:3].tolist() == [0, 1, 2]
    train, val = split_indices(targets)
    assert len(train) == 1438 and len(val) == 359 and not set(train) & set(val)
    assert np.bincount(targets[val]).tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
    b = build(DataConfig(name="digits"), channels=1, size=8)
    # 16 gray levels scaled to 0..255; no resampling at 8 px (held as one (N, 1, 8, 8) uint8 tensor: batched path)
    assert b.path.name == "batched"
    np.testing.assert_array_equal(b.val_loader.dataset.images[:, 0].numpy(), np.round(images[val] * 255 / 16))
    x, y = next(iter(b.val_loader))
    assert set((x * 255).round().flatten().tolist()) <= {float(round(k * 255 / 16)) for k in range(17)}
    assert y.tolist() == targets[val[:8]].tolist()


def test_digits_split_does_not_depend_on_training_seed():
    a = build(DataConfig(name="digits"), seed=1)
    b = build(DataConfig(name="digits"), seed=2)
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith("digits-train1438-val359-")
    assert torch.equal(a.val_loader.dataset.images, b.val_loader.dataset.images)


def test_normalisation_uses_given_mean_std_and_averages_for_one_channel():
    b = build(DataConfig(name="digits", val_subset=8), channels=1, mean=(0.2, 0.4, 0.6), std=(0.5, 0.5, 0.5))
    x, _ = next(iter(b.val_loader))
    # black background (0) -> (0 - mean(0.2, 0.4, 0.6)) / 0.5 = -0.8
    assert float(x.min()) == pytest.approx(-0.8, abs=1e-6)


# ----------------------------------------------------------------------------- CIFAR


def write_cifar(root, name: str, n_train: int, n_val: int, seed: int = 0):
    """Write CIFAR pickles in torchvision's layout; return (train_x, train_y, val_x, val_y) as HWC uint8."""
    rng = np.random.default_rng(seed)
    n_cls = 10 if name == "cifar10" else 100
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    out = []

    def dump(fname, x, y):
        key = "labels" if name == "cifar10" else "fine_labels"
        batch = {"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), key: y.tolist(), "batch_label": fname}
        with open(folder / fname, "wb") as f:
            pickle.dump(batch, f)

    for n, files in (
        (n_train, [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]),
        (n_val, ["test_batch"] if name == "cifar10" else ["test"]),
    ):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, n_cls, n)
        for fname, xs, ys in zip(files, np.array_split(x, len(files)), np.array_split(y, len(files))):
            dump(fname, xs, ys)
        out += [x, y]
    names = [f"class_{i:03d}" for i in range(n_cls)]
    meta = (
        {"label_names": names} if name == "cifar10" else {"fine_label_names": names, "coarse_label_names": []}
    )
    with open(folder / ("batches.meta" if name == "cifar10" else "meta"), "wb") as f:
        pickle.dump(meta, f)
    return out


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickle_layout_loads_labels_and_pixels(tmp_path, name):
    tx, ty, vx, vy = write_cifar(tmp_path, name, n_train=40, n_val=12)
    b = build(DataConfig(name=name, root=str(tmp_path)), batch_size=8, with_indices=True)
    n_cls = 10 if name == "cifar10" else 100
    assert b.num_classes == n_cls == dataset_num_classes(DataConfig(name=name))
    assert b.class_names[:2] == ["class_000", "class_001"] and len(b.class_names) == n_cls
    assert len(b.train_loader.dataset) == 40 and len(b.val_loader.dataset) == 12
    seen = []
    for x, y, idx in b.val_loader:
        for xi, yi, i in zip(x, y, idx):
            assert int(yi) == vy[i]
            np.testing.assert_array_equal(to_uint8(xi), vx[i])  # 32 -> 32 resize is exact
            seen.append(int(i))
    assert seen == list(range(12))
    x, y, idx = next(iter(b.train_loader))
    np.testing.assert_array_equal(y.numpy(), ty[idx.numpy()])
    np.testing.assert_array_equal(to_uint8(x[0]), tx[int(idx[0])])


def test_cifar_root_may_be_the_batch_folder_itself(tmp_path):
    _, _, _, vy = write_cifar(tmp_path, "cifar100", n_train=16, n_val=8)
    b = build(DataConfig(name="cifar100", root=str(tmp_path / "cifar-100-python")))
    np.testing.assert_array_equal(b.val_loader.dataset.targets, vy)


def test_cifar_missing_files_say_how_to_fix(tmp_path):
    with pytest.raises(DataError) as e:
        build(DataConfig(name="cifar100", root=str(tmp_path)))
    msg = str(e.value)
    assert str(tmp_path) in msg and "--data.download true" in msg and "cifar-100-python/" in msg
    assert "\n" not in msg


def test_cifar_constants():
    assert len(CIFAR_MEAN) == len(CIFAR_STD) == 3
    assert all(0.4 < m < 0.52 for m in CIFAR_MEAN) and all(0.25 < s < 0.28 for s in CIFAR_STD)


# ----------------------------------------------------------------------------- ImageFolder


def write_png(path, value: int, size: int = 8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def make_folder(root, classes=("dog", "cat", "fox"), n_train=4, n_val=2, val_classes=None):
    """Class k's images have pixel value 40 * k + 10 (k in sorted order); return that value map."""
    values = {c: 40 * k + 10 for k, c in enumerate(sorted(classes))}
    for split, n, cls in (("train", n_train, classes), ("val", n_val, val_classes or classes)):
        for c in cls:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                write_png(root / split / c / f"{i}.png", values.get(c, 0))
    return values


def test_imagefolder_loads_sorted_classes_and_labels(tmp_path):
    values = make_folder(tmp_path)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    b = build(DataConfig(name="imagefolder", root=str(tmp_path)), batch_size=4, with_indices=True)
    assert b.class_names == ["cat", "dog", "fox"] and b.num_classes == 3
    assert dataset_num_classes(DataConfig(name="imagefolder", root=str(tmp_path))) == 3
    assert len(b.train_loader.dataset) == 12 and len(b.val_loader.dataset) == 6
    for x, y, _ in b.val_loader:
        for xi, yi in zip(x, y):
            expected = values[b.class_names[int(yi)]]
            assert np.all(to_uint8(xi) == expected)


def folder_error(tmp_path, **cfg) -> str:
    with pytest.raises(DataError) as e:
        build(DataConfig(name="imagefolder", **cfg))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_imagefolder_missing_root(tmp_path):
    missing = tmp_path / "nope"
    msg = folder_error(tmp_path, root=str(missing))
    assert str(missing) in msg and "ROOT/train/<class>/<image>" in msg and "ROOT/val/<class>/<image>" in msg
    with pytest.raises(DataError, match=str(missing)):
        dataset_num_classes(DataConfig(name="imagefolder", root=str(missing)))
    assert "--data.root" in folder_error(tmp_path)


def test_imagefolder_missing_val_folder(tmp_path):
    write_png(tmp_path / "train" / "a" / "0.png", 1)
    write_png(tmp_path / "train" / "b" / "0.png", 2)
    msg = folder_error(tmp_path, root=str(tmp_path))
    assert str(tmp_path / "val") in msg and "ROOT/val/<class>/<image>" in msg


def test_imagefolder_empty_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    assert str(tmp_path / "train") in folder_error(tmp_path, root=str(tmp_path))
    make_folder(tmp_path, classes=("a", "b"))
    (tmp_path / "train" / "c").mkdir()
    (tmp_path / "val" / "c").mkdir()
    msg = folder_error(tmp_path, root=str(tmp_path))
    assert str(tmp_path / "train" / "c") in msg and "no images" in msg


def test_imagefolder_val_without_images(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), n_val=0)
    msg = folder_error(tmp_path, root=str(tmp_path))
    assert str(tmp_path / "val") in msg and "no images" in msg


def test_imagefolder_one_class(tmp_path):
    make_folder(tmp_path, classes=("only",))
    msg = folder_error(tmp_path, root=str(tmp_path))
    assert str(tmp_path / "train") in msg and "only one class" in msg


def test_imagefolder_class_sets_differ(tmp_path):
    make_folder(tmp_path, classes=("a", "b", "c"), val_classes=("a", "b", "d"))
    msg = folder_error(tmp_path, root=str(tmp_path))
    assert str(tmp_path / "train") in msg and "only in train: c" in msg and "only in val: d" in msg


def test_imagefolder_corrupt_image_names_its_path(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), n_train=2, n_val=2)
    bad = tmp_path / "val" / "a" / "0.png"
    bad.write_bytes(b"this is not a png")
    b = build(DataConfig(name="imagefolder", root=str(tmp_path)), batch_size=2)
    with pytest.raises(DataError) as e:
        list(b.val_loader)
    assert str(bad) in str(e.value) and "--data.skip_corrupt true" in str(e.value)


def test_imagefolder_skip_corrupt_skips_and_warns(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), n_train=3, n_val=2)
    garbage = tmp_path / "train" / "a" / "0.png"
    garbage.write_bytes(b"this is not a png")
    truncated = tmp_path / "val" / "b" / "1.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.warns(UserWarning, match="skipped 1 unreadable") as rec:
        b = build(DataConfig(name="imagefolder", root=str(tmp_path), skip_corrupt=True), batch_size=2)
    assert any(str(garbage) in str(w.message) for w in rec) and any(
        str(truncated) in str(w.message) for w in rec
    )
    assert len(b.train_loader.dataset) == 5 and len(b.val_loader.dataset) == 3
    assert sum(len(y) for _, y in b.val_loader) == 3


def test_subset_larger_than_dataset(tmp_path):
    with pytest.raises(DataError, match="train_subset=5000 .*1438"):
        build(DataConfig(name="digits", train_subset=5000))
    make_folder(tmp_path, classes=("a", "b"), n_train=2, n_val=2)
    with pytest.raises(DataError) as e:
        build(DataConfig(name="imagefolder", root=str(tmp_path), val_subset=5), batch_size=2)
    assert str(tmp_path) in str(e.value) and "val_subset=5" in str(e.value)


def test_subsets_are_fixed_random_and_independent_of_seed():
    full = build(DataConfig(name="digits", loader="per_image"))
    a = build(DataConfig(name="digits", train_subset=100, val_subset=50, loader="per_image"), seed=1)
    b = build(DataConfig(name="digits", train_subset=100, val_subset=50, loader="per_image"), seed=2)
    assert len(a.train_loader.dataset) == 100 and len(a.val_loader.dataset) == 50
    assert a.fingerprint == b.fingerprint != full.fingerprint
    sub = plain_dataset(a).images
    np.testing.assert_array_equal(sub, plain_dataset(b).images)
    # a random spread of the split, not its first 100 images
    assert not np.array_equal(sub, plain_dataset(full).images[:100])
    assert len(np.unique(plain_dataset(a).targets)) == 10


def test_no_full_batch_is_an_error():
    with pytest.raises(DataError, match="no full batch of 32"):
        build(DataConfig(name="digits", train_subset=20), batch_size=32)


# ----------------------------------------------------------------------------- indices, seeding, sampling


def test_with_indices_match_dataset_items():
    b = build(DataConfig(name="digits", train_subset=64, val_subset=24, loader="per_image"), size=16, batch_size=8,
              with_indices=True)
    base = plain_dataset(b)
    order = list(b.train_sampler)
    x, y, idx = next(iter(b.train_loader))
    assert idx.tolist() == order[:8]
    for xi, yi, i in zip(x, y, idx):
        ref_x, ref_y = base[int(i)]
        assert torch.equal(xi, ref_x) and int(yi) == ref_y
    vals = [(x, y, idx) for x, y, idx in b.val_loader]
    assert torch.cat([v[2] for v in vals]).tolist() == list(range(24))
    vbase = b.val_loader.dataset.dataset
    assert torch.equal(vals[1][0][3], vbase[11][0])


STRONG = AugmentConfig(
    auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25, mixup=0.8, cutmix=1.0, scale=(0.5, 1.0)
)
NO_MIX = STRONG.model_copy(update={"mixup": 0.0, "cutmix": 0.0})


def plain_dataset(b):
    """The untransformed-index dataset under the loader's keyed-view (and index) wrappers."""
    ds = b.train_loader.dataset.dataset
    return ds.dataset if hasattr(ds, "dataset") else ds


def batches(
    seed: int, workers: int = 0, epoch: int = 0, disturb: bool = False, augment=STRONG, n: int = 3, **kw
):
    """The first ``n`` train batches of ``epoch``; ``disturb`` draws from every global generator
    before each batch, as a model's init, dropout and drop-path would."""
    kw.setdefault("batch_size", 8)
    b = build(DataConfig(name="digits", train_subset=64, workers=workers), augment, size=16, seed=seed, **kw)
    b.train_sampler.set_epoch(epoch)
    out = []
    for batch in b.train_loader:
        out.append(batch)
        if len(out) == n:
            break
        if disturb:
            torch.rand(7), torch.randn(3), np.random.rand(3), __import__("random").random()
    return out


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for ba, bb in zip(a, b) for x, y in zip(ba, bb))


def test_same_seed_same_batches_different_seed_or_epoch_differs():
    seed_everything(0)
    a = batches(3)
    seed_everything(1)  # the global generators do not matter
    assert same(a, batches(3))
    x, y = a[0]
    assert y.shape == (8, 10) and not torch.all((y == 0) | (y == 1))  # mixup made soft targets
    assert (
        build(DataConfig(name="digits"), STRONG).soft_targets
        and not build(DataConfig(name="digits")).soft_targets
    )
    assert not torch.equal(x, batches(4, n=1)[0][0])
    assert not torch.equal(x, batches(3, epoch=1, n=1)[0][0])


def test_views_do_not_depend_on_global_rng_use_between_batches_or_on_workers():
    reference = batches(5)
    assert same(reference, batches(5, disturb=True))  # main process: transforms and mixup keyed, not global
    assert same(reference, batches(5, workers=2))
    assert same(reference, batches(5, workers=2, disturb=True))
    # the global generators come out of a batch exactly as they went in
    seed_everything(11)
    expected = (torch.rand(2), np.random.rand(2), __import__("random").random())
    seed_everything(11)
    batches(5, n=2)
    got = (torch.rand(2), np.random.rand(2), __import__("random").random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_persistent_workers_draw_each_epochs_own_views():
    """Workers that live from epoch to epoch (a training run's loaders) give the batches of one-process loading,
    epoch after epoch, and after a resume's skip_next; the processes are the same ones throughout."""

    def epochs(b) -> list:
        out = []
        for epoch, skip in ((0, 0), (1, 0), (1, 16)):  # the last: epoch 1 resumed after its first 2 batches
            b.train_sampler.set_epoch(epoch)
            b.train_loader.sampler.skip_next(skip)
            out.append(list(b.train_loader))
        return out

    reference = epochs(build(DataConfig(name="digits", train_subset=64), STRONG, size=16, seed=5))
    kept = build(DataConfig(name="digits", train_subset=64, workers=2, prefetch=3), STRONG, size=16, seed=5,
                 persistent_workers=True)
    assert kept.train_loader.persistent_workers and not kept.train_loader.pin_memory
    assert kept.train_loader.prefetch_factor == kept.val_loader.prefetch_factor == 3
    got = epochs(kept)
    workers = kept.train_loader._iterator._workers
    got.append(epochs(kept)[1])
    assert kept.train_loader._iterator._workers == workers and all(w.is_alive() for w in workers)
    assert same(reference[0], got[0]) and same(reference[1], got[1]) and same(reference[1], got[3])
    assert same(reference[1][2:], got[2]) and not same(reference[0], reference[1])


def test_a_view_is_a_function_of_seed_epoch_and_position():
    b = build(DataConfig(name="digits", train_subset=64), NO_MIX, size=16, seed=2, batch_size=8)
    b.train_sampler.set_epoch(3)
    first = next(iter(b.train_loader))
    again = next(iter(b.train_loader))  # a second pass over the same epoch (a resume) sees the same views
    assert same([first], [again])
    order = list(b.train_sampler)
    ds = b.train_loader.dataset
    key, (x5, y5) = ds[(order[5], 3, 5)]  # the keyed dataset alone reproduces view 5
    assert key == (order[5], 3, 5) and torch.equal(x5, first[0][5]) and y5 == int(first[1][5])
    _, (other, _) = ds[(order[5], 3, 6)]  # the same image at another position: another view
    assert not torch.equal(other, x5)


def test_repeated_augmentation_copies_are_distinct_views():
    aug = NO_MIX.model_copy(update={"repeated_aug": 3})
    b = build(
        DataConfig(name="digits", train_subset=60), aug, size=16, seed=1, batch_size=6, with_indices=True
    )
    x, _, idx = next(iter(b.train_loader))
    assert idx[0] == idx[1] == idx[2]
    assert not torch.equal(x[0], x[1]) and not torch.equal(x[1], x[2])


def test_views_are_keyed_by_global_position_across_world_sizes():
    cfg = DataConfig(name="digits", train_subset=64)
    single = batches(7, augment=NO_MIX, n=8, batch_size=4)
    images = torch.cat([x for x, _ in single])
    for rank in (0, 1):
        b = build(cfg, NO_MIX, size=16, seed=7, batch_size=4, world_size=2, rank=rank)
        x, _ = next(iter(b.train_loader))
        for i in range(4):  # rank r's i-th view is the one-process view at global position r + 2i
            assert torch.equal(x[i], images[rank + 2 * i])


def test_train_sampling_depends_only_on_seed_and_epoch():
    b = build(DataConfig(name="digits", train_subset=64), size=8, seed=7)
    s = b.train_sampler
    first = list(s)
    assert list(s) == first and sorted(first) == list(range(64)) and first != list(range(64))
    s.set_epoch(1)
    assert list(s) != first
    other = build(DataConfig(name="digits", train_subset=64), size=8, seed=8).train_sampler
    assert list(other) != first


def test_world_size_two_partitions_the_epoch():
    cfg = DataConfig(name="digits", train_subset=101, val_subset=21)
    ranks = [
        build(cfg, size=8, seed=3, world_size=2, rank=r, batch_size=10, with_indices=True) for r in (0, 1)
    ]
    train = [torch.cat([idx for _, _, idx in b.train_loader]).tolist() for b in ranks]
    assert len(train[0]) == len(train[1]) == 50  # 101 -> 50 per rank (sampler drops 1), 5 full batches
    assert not set(train[0]) & set(train[1])
    single = list(build(cfg, size=8, seed=3).train_sampler)
    assert [single[i] for i in range(0, 100, 2)] == train[0]  # ranks split one permutation
    val = [torch.cat([idx for _, _, idx in b.val_loader]).tolist() for b in ranks]
    assert set(val[0]) | set(val[1]) == set(range(21)) and val[0] == sorted(val[0])
    assert (len(val[0]), len(val[1])) == (11, 10)  # no padding: each val image is evaluated once over the ranks


def test_repeated_augmentation_sampler_is_seeded():
    cfg = DataConfig(name="digits", train_subset=60)
    aug = PLAIN.model_copy(update={"repeated_aug": 3})
    a, b = (list(build(cfg, aug, size=8, seed=s).train_sampler) for s in (1, 2))
    assert a != b
    assert a == list(build(cfg, aug, size=8, seed=1).train_sampler)
    assert a[0] == a[1] == a[2]  # each index repeated three times in a row


# ----------------------------------------------------------------------------- transforms and config


def test_crop_pct_center_crops_validation():
    aug = PLAIN.model_copy(update={"crop_pct": 0.5})
    b = build(DataConfig(name="digits", val_subset=8), aug, size=16, channels=1)
    full = build(DataConfig(name="digits", val_subset=8), PLAIN, size=16, channels=1)
    x, _ = next(iter(b.val_loader))
    xf, _ = next(iter(full.val_loader))
    assert x.shape == xf.shape == (8, 1, 16, 16)
    assert not torch.equal(x, xf)
    # digits sit in the middle of a dark border: the 50% center crop is brighter on average
    assert float(x.mean()) > float(xf.mean()) + 0.05


def test_config_validation():
    with pytest.raises(pydantic.ValidationError, match="download"):
        DataConfig(name="digits", download=True)
    with pytest.raises(pydantic.ValidationError, match="auto_augment"):
        AugmentConfig(auto_augment="rand-q9")
    with pytest.raises(pydantic.ValidationError):
        DataConfig(nmae="digits")
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig(hflip=1.5)
    with pytest.raises(pydantic.ValidationError):
        DataConfig(train_subset=0)
    assert AugmentConfig(auto_augment="none").auto_augment is None


def test_mixup_needs_even_batch_and_channels_are_checked():
    with pytest.raises(ConfigError, match="even"):
        build(DataConfig(name="digits"), STRONG, batch_size=7)
    with pytest.raises(ConfigError, match="input_size"):
        build_data(DataConfig(), PLAIN, input_size=(4, 8, 8), mean=ZERO, std=ONE, batch_size=8, seed=0)
    assert not build(DataConfig(), PLAIN).soft_targets


def test_fingerprint_tracks_contents(tmp_path):
    make_folder(tmp_path, classes=("a", "b"), n_train=3, n_val=2)
    cfg = DataConfig(name="imagefolder", root=str(tmp_path))
    fp = build(cfg, batch_size=2).fingerprint
    assert build(cfg, batch_size=2).fingerprint == fp
    os.rename(tmp_path / "train" / "a" / "2.png", tmp_path / "train" / "b" / "9.png")  # relabel one image
    fp2 = build(cfg, batch_size=2).fingerprint
    assert fp2 != fp and fp2.startswith("imagefolder-train6-val4-")
    write_png(tmp_path / "val" / "a" / "0.png", 200)  # same name, new pixels (sampled: few files)
    assert build(cfg, batch_size=2).fingerprint != fp2


# ----------------------------------------------------------------------------- Fashion-MNIST


def write_idx(path, array: np.ndarray, gz: bool):
    data = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_fashion(folder, n_train=20, n_val=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_val, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_val),
    }
    for i, (name, arr) in enumerate(arrays.items()):
        write_idx(folder / name, arr, gz=i % 2 == 0)  # a mix of gzipped and plain files
    return arrays


@pytest.mark.parametrize("layout", ["", "FashionMNIST/raw"])
def test_fashion_mnist_idx_files(tmp_path, layout):
    arrays = write_fashion(tmp_path / layout if layout else tmp_path)
    b = build(
        DataConfig(name="fashion-mnist", root=str(tmp_path)),
        size=28,
        channels=1,
        batch_size=4,
        with_indices=True,
    )
    assert b.num_classes == 10 and b.class_names[0] == "T-shirt/top" and b.class_names[9] == "Ankle boot"
    assert len(b.train_loader.dataset) == 20 and len(b.val_loader.dataset) == 10
    x, y, idx = next(iter(b.val_loader))
    np.testing.assert_array_equal(y.numpy(), arrays["t10k-labels-idx1-ubyte"][:4])
    np.testing.assert_array_equal(to_uint8(x[2])[..., 0], arrays["t10k-images-idx3-ubyte"][2])


def test_fashion_mnist_errors(tmp_path):
    with pytest.raises(DataError) as e:
        build(DataConfig(name="fashion-mnist", root=str(tmp_path)))
    assert str(tmp_path) in str(e.value) and "dataset-fashion-mnist" in str(e.value)
    write_fashion(tmp_path)
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-3])  # truncated
    with pytest.raises(DataError, match="truncated") as e:
        build(DataConfig(name="fashion-mnist", root=str(tmp_path)))
    assert str(bad) in str(e.value)


REAL_FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(
    not os.path.isdir(REAL_FASHION), reason="Debian package dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist_smoke():
    b = build(DataConfig(name="fashion-mnist", val_subset=100), size=28, channels=1, batch_size=16)
    assert b.fingerprint.startswith("fashion-mnist-train60000-val100-")
    x, y = next(iter(b.train_loader))
    assert x.shape == (16, 1, 28, 28) and int(y.min()) >= 0 and int(y.max()) <= 9
    assert float(x.std()) > 0.1


# ----------------------------------------------------------------------------- holdout (validation on training images)


def _images(dataset) -> np.ndarray:
    """The raw uint8 images of a bundle's data set on either path (per-image: numpy; batched: resident tensor)."""
    images = dataset.images
    images = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
    return images.reshape(len(images), -1)


@pytest.mark.parametrize("loader", ["per_image", "batched"])
def test_holdout_validates_on_training_images_the_rest_train_on(loader):
    whole = build(DataConfig(name="digits", train_subset=64, loader="per_image"), PLAIN, size=8, channels=1)
    b = build(DataConfig(name="digits", train_subset=64, holdout=16, loader=loader), PLAIN, size=8, channels=1)
    assert b.path.name == loader
    train = _images(b.train_loader.dataset.dataset if loader == "per_image" else b.train_loader.dataset)
    val = _images(b.val_loader.dataset)
    assert (len(train), len(val)) == (48, 16)
    rows = {row.tobytes() for row in _images(whole.train_loader.dataset.dataset)}
    # the two parts are disjoint and together the 64 training images; the test split is not read
    assert {r.tobytes() for r in train} | {r.tobytes() for r in val} == rows
    assert not {r.tobytes() for r in train} & {r.tobytes() for r in val}
    assert "-train48-val16-" in b.fingerprint


def test_holdout_is_the_same_images_on_both_paths_for_every_run_seed_and_a_fraction_counts_images():
    made = {(loader, seed): build(DataConfig(name="digits", train_subset=64, holdout=0.25, loader=loader), PLAIN,
                                  size=8, channels=1, seed=seed)
            for loader in ("per_image", "batched") for seed in (0, 5)}
    fingerprints = {b.fingerprint for b in made.values()}
    assert len(fingerprints) == 1 and "-train48-val16-" in fingerprints.pop()  # round(0.25 * 64) = 16
    other = build(DataConfig(name="digits", train_subset=64, holdout=16, holdout_seed=1), PLAIN, size=8, channels=1)
    assert other.fingerprint != made["per_image", 0].fingerprint  # another draw


def test_holdout_errors_name_the_fix():
    with pytest.raises(DataError, match=r"data.holdout=64 holds out 64 of the 64 training images"):
        build(DataConfig(name="digits", train_subset=64, holdout=64), PLAIN, size=8, channels=1)
    with pytest.raises(pydantic.ValidationError, match="which holdout replaces"):
        DataConfig(name="digits", val_subset=10, holdout=0.1)
    for bad in (0, 1.0, -0.5):
        with pytest.raises(pydantic.ValidationError, match="a fraction between 0 and 1"):
            DataConfig(holdout=bad)
