"""Data sets (digits, Fashion-MNIST, CIFAR-10/100, ImageFolder) with timm transforms and mixup.

    bundle = build_data(DataConfig(name="cifar100", root="data"), AugmentConfig(),
                        input_size=(3, 224, 224), mean=CIFAR_MEAN, std=CIFAR_STD, batch_size=128, seed=42)
    for epoch in range(epochs):
        bundle.train_sampler.set_epoch(epoch)
        for images, targets in bundle.train_loader:  # mixup/cutmix already applied (soft targets)
            ...

Every training batch is a pure function of (seed, epoch, step, rank), whatever the model, the
global generators, the number of workers or a resume (see ``views``).
"""

from ..lazy import lazy_exports
from .config import AugmentConfig, DataConfig

# the configs are light (read by `ofakd --help`); building data imports torch and torchvision on use
__getattr__, __dir__ = lazy_exports(__name__, {
    ".build": ("DataBundle", "array_data", "build_data", "dataset_num_classes", "given_data", "run_data"),
    ".loaders": ("seed_everything",),
})

CIFAR_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR_STD = (0.2673, 0.2564, 0.2762)

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "AugmentConfig",
    "DataBundle",
    "DataConfig",
    "run_data",
    "array_data",
    "build_data",
    "dataset_num_classes",
    "given_data",
    "seed_everything",
]
