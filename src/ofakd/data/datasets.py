"""Map-style datasets: images held in memory, images in files, and an index-returning wrapper."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError

UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ArrayImageDataset(Dataset):
    """uint8 images in memory, (N, H, W) grayscale or (N, H, W, 3) RGB, with integer targets."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform: Callable | None = None):
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(targets):
            raise ValueError("images must be uint8 (N, H, W[, 3]) with one target per image")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int) -> Image.Image:
        """The untransformed PIL image at ``index``."""
        return Image.fromarray(self.images[index])

    def __getitem__(self, index: int):
        img = self.load(index)
        return (self.transform(img) if self.transform else img), int(self.targets[index])

    def subset(self, indices: Sequence[int]) -> ArrayImageDataset:
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayImageDataset(self.images[idx], self.targets[idx], self.transform)

    @classmethod
    def given(cls, images, labels, *, what: str, classes: int) -> ArrayImageDataset:
        """Images and labels given as arrays (numpy or torch): uint8 (N, H, W), (N, H, W, C) or (N, C, H, W) with
        C 1 or 3, and one integer label in [0, classes) per image; a :class:`DataError` naming ``what`` otherwise."""
        pixels, targets = _as_numpy(images), _as_numpy(labels)
        if pixels.dtype != np.uint8:
            raise DataError(f"{what}: images must be uint8 pixels (0-255), got {pixels.dtype}; convert them (e.g. "
                            "(x * 255).round().astype('uint8')), or pass a Dataset of transformed tensors instead")
        if pixels.ndim == 4 and pixels.shape[1] in (1, 3) and pixels.shape[-1] not in (1, 3):
            pixels = pixels.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        if pixels.ndim == 4 and pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        if pixels.ndim not in (3, 4) or (pixels.ndim == 4 and pixels.shape[-1] != 3) or len(pixels) == 0:
            raise DataError(f"{what}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3 and N > 0, "
                            f"got shape {tuple(pixels.shape)}")
        if targets.ndim != 1 or len(targets) != len(pixels) or not np.issubdtype(targets.dtype, np.integer):
            raise DataError(f"{what}: labels must be one integer class index per image ({len(pixels)}), got "
                            f"{targets.dtype} of shape {tuple(targets.shape)}")
        if targets.min() < 0 or targets.max() >= classes:
            raise DataError(f"{what}: labels must lie in [0, {classes}) for a student with {classes} classes, got "
                            f"{int(targets.min())}..{int(targets.max())}")
        return cls(np.ascontiguousarray(pixels), targets)


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""PIL's modes of one-channel images wider than 8 bits (16-bit PNG/TIFF; "I": 32-bit integers, as some decoders
give 16-bit files)."""


def read_image(path: str) -> Image.Image:
    """Open and fully decode the image at ``path`` as 8-bit RGB or L; raise DataError naming it when unreadable.
    A 16-bit image is scaled by its real range (v / 257: 65535 -> 255), never clipped at 255 (which would make
    every pixel above 255 white)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in SIXTEEN_BIT_MODES:
                return _from_16_bits(im, path)
            if im.mode == "F":
                raise DataError(f"image {path} holds 32-bit float pixels, whose range ofakd cannot know (0..1? "
                                "0..255?); convert it to an 8- or 16-bit image")
            return im.copy() if im.mode in ("RGB", "L") else im.convert("RGB")
    except DataError:
        raise
    except UNREADABLE as e:
        raise DataError(
            f"cannot read image {path} ({type(e).__name__}: {e}); replace or delete it, "
            "or pass --data.skip_corrupt true to skip unreadable images"
        ) from None


def _from_16_bits(im: Image.Image, path: str) -> Image.Image:
    """A one-channel image of up to 16 bits as 8-bit L, each value v as round(v / 257)."""
    pixels = np.asarray(im, dtype=np.int64)
    if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
        raise DataError(f"image {path} holds {im.mode} pixels outside 0..65535 ({int(pixels.min())}..{int(pixels.max())}), "
                        "whose range ofakd cannot know; convert it to an 8- or 16-bit image")
    return Image.fromarray(np.rint(pixels / 257.0).astype(np.uint8))  # (2-D uint8: mode L)


class ImageFileDataset(Dataset):
    """Images in files, ``samples`` = [(path, target), ...].

    With ``skip_corrupt`` an image that fails to decode here (after the build-time check passed it)
    is replaced by the next readable one, with a warning, so a long run does not die on one file.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        transform: Callable | None = None,
        skip_corrupt: bool = False,
    ):
        self.samples = list(samples)
        self.targets = np.asarray([t for _, t in self.samples], dtype=np.int64)
        self.transform = transform
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> Image.Image:
        """The untransformed PIL image at ``index``."""
        return read_image(self.samples[index][0])

    def __getitem__(self, index: int):
        if not self.skip_corrupt:
            img, target = self.load(index), self.samples[index][1]
        else:
            img, target = self._load_skipping(index)
        return (self.transform(img) if self.transform else img), int(target)

    def _load_skipping(self, index: int):
        for k in range(len(self.samples)):
            path, target = self.samples[(index + k) % len(self.samples)]
            try:
                return read_image(path), target
            except DataError:
                warnings.warn(f"skipping unreadable image {path}", stacklevel=3)
        raise DataError("no image in the data set can be read; check the files under data.root")

    def subset(self, indices: Sequence[int]) -> ImageFileDataset:
        return ImageFileDataset([self.samples[i] for i in indices], self.transform, self.skip_corrupt)


class IndexedDataset(Dataset):
    """Wrap a dataset so each item is ``(image, target, index)``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        img, target = self.dataset[index]
        return img, target, index


def _as_numpy(values) -> np.ndarray:
    """A numpy view of a numpy array, a torch tensor (moved to the CPU) or a sequence."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)
