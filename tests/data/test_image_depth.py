"""Images deeper than 8 bits are read with their real range (issue 29): a dark and a bright 16-bit class stay
dark and bright, not both clipped to white."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ofakd.data.config import DataConfig
from ofakd.data.sources import imagefolder
from ofakd.errors import DataError

LEVELS = {"dark": 1000, "bright": 60000}
"""Each class's 16-bit pixel value: 1000 / 257 -> 4 and 60000 / 257 -> 233 in 8 bits."""


def sixteen_bit_folder(root):
    for split in ("train", "val"):
        for name, level in LEVELS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((6, 6), level + i, dtype=np.uint16)).save(folder / f"{i}.png")
    return root


def test_a_dark_and_a_bright_16_bit_class_keep_their_range(tmp_path):
    source = imagefolder.load(DataConfig(name="imagefolder", root=str(sixteen_bit_folder(tmp_path / "data"))))
    assert Image.open(source.train.samples[0][0]).mode.startswith("I")  # (the files really are 16-bit)
    seen = {}
    for index, (_, target) in enumerate(source.train.samples):
        image = source.train.load(index)
        assert image.mode == "L"
        seen.setdefault(source.class_names[target], set()).update(np.unique(np.asarray(image)).tolist())
    assert seen == {"dark": {4}, "bright": {233}}  # round(1000 / 257), round(60001 / 257): neither is 255


def test_float_images_are_refused_by_name(tmp_path):
    from ofakd.data.datasets import read_image

    path = tmp_path / "f.tif"
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(path)
    with pytest.raises(DataError, match=r"f.tif holds 32-bit float pixels, whose range ofakd cannot know"):
        read_image(str(path))
