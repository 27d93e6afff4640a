"""The batched data path: PIL-exact resampling, keyed views, the path choice, and statistics beside the per-image path."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import RandomResizedCropAndInterpolation

from ofakd.data import AugmentConfig, DataConfig, build_data, seed_everything
from ofakd.data.batched.batch_transforms import CROP, FLIP, to_channels
from ofakd.data.batched.crop_params import random_resized_boxes
from ofakd.data.batched.erasing import DRAWS, erase
from ofakd.data.batched.keyed_uniforms import keyed_uniforms, keyed_words
from ofakd.data.batched.resample import axis_weights, resample, rows_go_first
from ofakd.errors import ConfigError

PLAIN = AugmentConfig(train_resize_only=True, hflip=0.0, color_jitter=0.0, interpolation="bilinear")
CROPS = AugmentConfig(color_jitter=0.0, reprob=0.5, scale=(0.3, 1.0), interpolation="random")
"""Random-resized crops with random interpolation, flips and erasing: everything random the batched path draws per view."""
MIXED = CROPS.model_copy(update={"mixup": 0.8, "cutmix": 1.0, "smoothing": 0.1})


def build(augment=PLAIN, loader="auto", size=16, channels=1, **kw):
    data = DataConfig(name="digits", train_subset=kw.pop("train_subset", 64), val_subset=kw.pop("val_subset", 24),
                      loader=loader)
    kw.setdefault("batch_size", 8)
    kw.setdefault("seed", 0)
    return build_data(data, augment, input_size=(channels, size, size), mean=(0.0,) * channels,
                      std=(1.0,) * channels, **kw)


def first_batches(bundle, epoch=0, n=3, skip=0):
    bundle.train_sampler.set_epoch(epoch)
    bundle.train_loader.sampler.skip_next(skip)
    out = []
    for batch in bundle.train_loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for ba, bb in zip(a, b) for x, y in zip(ba, bb))


# ----------------------------------------------------------------------------- resampling as PIL does it


@pytest.mark.parametrize(("name", "pil"), [("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC),
                                           ("nearest", Image.NEAREST)])
def test_crop_and_resize_matches_pil_within_one_gray_level(name, pil):
    image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    pixels = torch.from_numpy(image).float()[None, None]
    for (left, top, right, bottom), (height, width) in [((3, 5, 20, 17), (24, 24)), ((0, 0, 28, 28), (56, 56)),
                                                         ((2, 2, 26, 26), (10, 12)), ((0, 0, 28, 28), (224, 224)),
                                                         ((7, 1, 11, 28), (16, 16)), ((0, 3, 12, 27), (20, 8))]:
        expected = np.asarray(Image.fromarray(image).crop((left, top, right, bottom)).resize((width, height), pil))
        rows = axis_weights(torch.tensor([top]), torch.tensor([bottom - top]), height, 28, name)
        cols = axis_weights(torch.tensor([left]), torch.tensor([right - left]), width, 28, name)
        first = rows_go_first(np.array([bottom - top]), height, np.array([right - left]), width)
        got = resample(pixels, rows, cols, first)[0, 0].numpy()
        assert got.shape == expected.shape
        if name == "nearest":  # a centre on a pixel border may round either way in PIL's fixed point
            assert (got == expected).mean() > 0.85, (left, top, right, bottom)
        else:
            assert np.abs(got - expected).max() <= 1, (name, left, top, right, bottom)
    whole = axis_weights(torch.tensor([0]), torch.tensor([28]), 28, 28, name)
    assert torch.equal(resample(pixels, whole, whole), pixels)  # the same size: the image itself


def test_rgb_to_one_channel_is_pils_luma_exactly():
    rgb = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    assert np.array_equal(to_channels(pixels, 1)[0, 0].numpy(), np.asarray(Image.fromarray(rgb).convert("L")))
    assert torch.equal(to_channels(pixels[:, :1], 3), pixels[:, :1].expand(-1, 3, -1, -1))


# ----------------------------------------------------------------------------- which path


def test_auto_takes_the_batched_path_for_data_in_memory_and_says_why_when_it_cannot():
    assert build().path.name == "batched" and build().path.note is None
    assert build(loader="per_image").path.name == "per_image"
    rand = PLAIN.model_copy(update={"auto_augment": "rand-m9-mstd0.5-inc1"})
    fallback = build(rand).path
    assert fallback.name == "per_image" and "augment.auto_augment 'rand-m9-mstd0.5-inc1'" in fallback.note
    jitter = build(CROPS.model_copy(update={"color_jitter": 0.4})).path
    assert jitter.name == "per_image" and "augment.color_jitter 0.4" in jitter.note
    with pytest.raises(ConfigError, match="data.loader batched cannot compute augment.auto_augment"):
        build(rand, loader="batched")


def test_files_take_the_per_image_path_and_batched_is_refused_for_them(tmp_path):
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for k in range(4):
                Image.fromarray(np.full((8, 8, 3), 40 * k, dtype=np.uint8)).save(folder / f"{k}.png")
    data = DataConfig(name="imagefolder", root=str(tmp_path))
    bundle = build_data(data, PLAIN, input_size=(3, 8, 8), mean=(0.0,) * 3, std=(1.0,) * 3, batch_size=4, seed=0)
    assert bundle.path.name == "per_image" and bundle.path.note is None
    with pytest.raises(ConfigError, match="data 'imagefolder' is read image by image"):
        build_data(data.model_copy(update={"loader": "batched"}), PLAIN, input_size=(3, 8, 8), mean=(0.0,) * 3,
                   std=(1.0,) * 3, batch_size=4, seed=0)


def test_crop_padding_needs_a_plain_resize():
    with pytest.raises(ValueError, match="set train_resize_only true"):
        AugmentConfig(crop_padding=4)
    with pytest.raises(ValueError, match="crop_padding must be >= 0"):
        AugmentConfig(train_resize_only=True, crop_padding=-1)


# ----------------------------------------------------------------------------- the same views as the per-image path


@pytest.mark.parametrize("size", [8, 32])
def test_plain_views_match_the_per_image_path(size):
    """Nothing random: at the images' own 8 px the two paths give the same tensors; upsampled to 32 px they differ
    by at most one gray level (PIL's fixed-point rounding)."""
    batched, per_image = build(size=size), build(loader="per_image", size=size)
    for a, b in ((first_batches(batched, n=2), first_batches(per_image, n=2)),
                 ([next(iter(batched.val_loader))], [next(iter(per_image.val_loader))])):
        assert torch.equal(a[0][1], b[0][1])
        diff = max(float((x[0] - y[0]).abs().max()) for x, y in zip(a, b))
        assert diff == 0.0 if size == 8 else diff <= 1 / 255 + 1e-6


def test_crop_pct_validation_view_matches_the_per_image_path():
    aug = PLAIN.model_copy(update={"crop_pct": 0.75, "interpolation": "bicubic"})
    a, b = next(iter(build(aug, size=24).val_loader)), next(iter(build(aug, loader="per_image", size=24).val_loader))
    assert a[0].shape == b[0].shape == (8, 1, 24, 24)
    assert float((a[0] - b[0]).abs().max()) <= 1 / 255 + 1e-6


def test_mixup_and_cutmix_draw_the_same_lambda_and_box_on_both_paths():
    """Mixup/cutmix are keyed by the batch (seed, epoch, first position) on both paths: the soft targets — which
    carry λ, the mode and the box's area — are equal batch for batch."""
    a = first_batches(build(MIXED, loader="batched"), n=4)
    b = first_batches(build(MIXED, loader="per_image"), n=4)
    for (_, ya), (_, yb) in zip(a, b):
        assert ya.shape == (8, 10) and torch.equal(ya, yb)
    assert len({round(float(y.max()), 4) for _, y in a}) > 1  # λ varies from batch to batch


@pytest.mark.parametrize("loader", ["batched", "per_image"])
def test_padded_crop_shifts_the_image_with_zero_fill(loader):
    aug = PLAIN.model_copy(update={"crop_padding": 3})
    plain = torch.cat([x for x, _ in first_batches(build(size=8, train_subset=32), n=4)])
    shifted = torch.cat([x for x, _ in first_batches(build(aug, loader=loader, size=8, train_subset=32), n=4)])
    padded = torch.nn.functional.pad(plain, (3, 3, 3, 3))
    offsets = []
    for view, original in zip(shifted, padded):
        found = [(dy, dx) for dy in range(7) for dx in range(7) if torch.equal(view, original[:, dy:dy + 8, dx:dx + 8])]
        assert found, "every view is the image shifted by at most 3 pixels, zero filled"
        offsets.append(found[0])
    assert len(set(offsets)) > 5


# ----------------------------------------------------------------------------- keyed views


def test_batched_views_are_a_function_of_seed_epoch_and_position_only():
    seed_everything(0)
    reference = first_batches(build(MIXED, seed=3))
    seed_everything(1)  # the global generators do not matter ...
    state = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    again = first_batches(build(MIXED, seed=3))
    assert same(reference, again)
    # ... and come out of a batch exactly as they went in
    assert torch.equal(state[0], torch.get_rng_state()) and np.array_equal(state[1], np.random.get_state()[1])
    assert state[2] == random.getstate()
    assert not torch.equal(reference[0][0], first_batches(build(MIXED, seed=4), n=1)[0][0])
    assert not torch.equal(reference[0][0], first_batches(build(MIXED, seed=3), epoch=1, n=1)[0][0])
    resumed = first_batches(build(MIXED, seed=3), n=2, skip=8)  # a resume after the first batch
    assert same(reference[1:], resumed)


def test_rank_r_of_two_draws_the_one_process_views_at_positions_r_plus_2i():
    single = torch.cat([x for x, _ in first_batches(build(CROPS, seed=7, batch_size=4), n=8)])
    for rank in (0, 1):
        x, _ = first_batches(build(CROPS, seed=7, batch_size=4, world_size=2, rank=rank), n=1)[0]
        for i in range(4):
            assert torch.equal(x[i], single[rank + 2 * i])


def test_repeated_augmentation_copies_are_distinct_views():
    bundle = build(CROPS.model_copy(update={"repeated_aug": 3}), train_subset=60, batch_size=6, with_indices=True)
    x, _, index = first_batches(bundle, n=1)[0]
    assert index[0] == index[1] == index[2] and not torch.equal(x[0], x[1]) and not torch.equal(x[1], x[2])


def test_indices_name_the_images_each_batch_holds():
    bundle = build(train_subset=64, val_subset=24, size=8, with_indices=True)
    order = list(bundle.train_sampler)
    x, y, index = first_batches(bundle, n=1)[0]
    assert index.tolist() == order[:8] and torch.equal(y, bundle.train_loader.dataset.targets[index])
    assert torch.equal(x, bundle.train_loader.dataset.images[index].float() / 255)
    assert torch.cat([i for _, _, i in bundle.val_loader]).tolist() == list(range(24))


# ----------------------------------------------------------------------------- statistics beside timm's


def test_crop_boxes_follow_timms_distribution():
    """Area fraction and log aspect ratio of 20,000 batched boxes against 20,000 of timm's random-resized crop."""
    height = width = 28
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = random_resized_boxes(keyed_uniforms((2, 0, 0), np.arange(20000), CROP, 40), height, width, scale, ratio)
    ours = (boxes.height * boxes.width / (height * width), np.log(boxes.width / boxes.height))
    random.seed(0)
    image = Image.new("L", (width, height))
    theirs = np.array([RandomResizedCropAndInterpolation.get_params(image, scale, ratio) for _ in range(20000)])
    timm_stats = (theirs[:, 2] * theirs[:, 3] / (height * width), np.log(theirs[:, 3] / theirs[:, 2]))
    for a, b in zip(ours, timm_stats):
        assert np.abs(np.quantile(a, [0.1, 0.25, 0.5, 0.75, 0.9]) - np.quantile(b, [0.1, 0.25, 0.5, 0.75, 0.9])).max() < 0.02
    assert (boxes.top + boxes.height <= height).all() and (boxes.left + boxes.width <= width).all()
    tops = boxes.top[boxes.height == 14]  # top is uniform over 0..H-h, both ends included
    assert tops.min() == 0 and tops.max() == 14


def test_flip_rate_is_the_configured_probability():
    u = keyed_uniforms((2, 5, 1), np.arange(50000), FLIP, 1)[:, 0]
    for p in (0.5, 0.2):
        assert abs(float((u < p).mean()) - p) < 0.01


def test_erasing_follows_timms_rate_and_box_sizes():
    count, height, width = 4000, 24, 20
    ours = torch.zeros(count, 1, height, width)
    positions = np.arange(count)
    erase(ours, keyed_uniforms((2, 0, 0), positions, 5, DRAWS), keyed_words((2, 0, 0), positions, 6), 0.25)
    random.seed(0)
    torch.manual_seed(0)
    theirs = RandomErasing(0.25, mode="pixel", max_count=1, device="cpu")(torch.zeros(count, 1, height, width))
    sizes = [(t != 0).flatten(1).sum(1).numpy() for t in (ours, theirs)]
    assert abs((sizes[0] > 0).mean() - (sizes[1] > 0).mean()) < 0.03
    assert abs((sizes[0] > 0).mean() - 0.25) < 0.03
    erased = [s[s > 0] / (height * width) for s in sizes]
    assert abs(np.median(erased[0]) - np.median(erased[1])) < 0.03
    assert erased[0].max() <= 1 / 3 + 2 * math.sqrt(1 / 3) / min(height, width) + 0.05


# ----------------------------------------------------------------------------- arrays given in Python


def test_arrays_take_the_batched_path_and_give_the_views_of_the_same_data_set():
    from ofakd.data import array_data
    from ofakd.data.sources import load_source
    from ofakd.errors import DataError

    source = load_source(DataConfig(name="digits"))
    train, val = source.train.subset(range(64)), source.val.subset(range(24))
    reference = build_data(DataConfig(name="digits", train_subset=64, val_subset=24), CROPS, input_size=(1, 16, 16),
                           mean=(0.0,), std=(1.0,), batch_size=8, seed=0)
    as_torch = (torch.from_numpy(train.images)[:, None], torch.from_numpy(train.targets))  # (N, 1, H, W) tensors
    given = array_data(as_torch, (val.images, val.targets), source.class_names, CROPS, input_size=(1, 16, 16),
                       mean=(0.0,), std=(1.0,), batch_size=8, seed=0)
    assert given.path.name == "batched" and given.fingerprint.startswith("python-train64-val24-")
    # subsets of digits are drawn at random: compare with the views of the same images in the same order
    reference_images = reference.train_loader.dataset.images
    assert not torch.equal(reference_images, given.train_loader.dataset.images)
    rebuilt = array_data((reference_images, reference.train_loader.dataset.targets),
                         (val.images, val.targets), source.class_names, CROPS, input_size=(1, 16, 16), mean=(0.0,),
                         std=(1.0,), batch_size=8, seed=0)
    assert same(first_batches(reference), first_batches(rebuilt))
    bad = [((train.images.astype(np.float32), train.targets), "images must be uint8 pixels"),
           ((train.images, train.targets + 10), r"labels must lie in \[0, 10\)"),
           ((train.images[:, :4], train.targets[:3]), "one integer class index per image"),
           ((train.images[..., None].repeat(2, axis=-1), train.targets), "with C 1 or 3")]
    for arrays, message in bad:
        with pytest.raises(DataError, match=message):
            array_data(arrays, (val.images, val.targets), source.class_names, CROPS, input_size=(1, 16, 16),
                       mean=(0.0,), std=(1.0,), batch_size=8, seed=0)
