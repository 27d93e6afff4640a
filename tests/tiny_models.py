"""Tiny timm models of every family for fast CPU tests (randomly initialised, 10 classes), and a hand-written CNN."""

from __future__ import annotations

import torch
from timm.layers import Mlp
from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock
from torch import nn

import ofakd

TINY_VIT = dict(img_size=32, patch_size=4, depth=4, embed_dim=64, num_heads=2)


def tiny(family: str, num_classes: int = 10, size: int = 32):
    """A small model of ``family`` for ``size``-pixel 3-channel inputs."""
    vit = dict(TINY_VIT, img_size=size)
    if family == "resnet":
        return ofakd.create_model("resnet18", num_classes=num_classes)
    if family == "mobilenetv2":
        return ofakd.create_model("mobilenetv2_050", num_classes=num_classes)
    if family == "mobilenetv3":
        return ofakd.create_model("mobilenetv3_small_050", num_classes=num_classes)
    if family == "convnext":
        return ofakd.create_model("convnext_atto", num_classes=num_classes)
    if family == "efficientnet":
        return ofakd.create_model("efficientnet_b0", num_classes=num_classes)
    if family == "deit":
        return ofakd.create_model("deit_tiny_patch16_224", num_classes=num_classes, **vit)
    if family == "deit_distilled":
        return ofakd.create_model("deit_tiny_distilled_patch16_224", num_classes=num_classes, **vit)
    if family == "vit_registers":
        return ofakd.create_model(
            "vit_tiny_patch16_224", num_classes=num_classes, class_token=False, reg_tokens=4, global_pool="avg", **vit
        )
    if family == "swin":
        return ofakd.create_model(
            "swin_tiny_patch4_window7_224",
            num_classes=num_classes,
            img_size=size,
            window_size=4 if size % 16 == 0 else size // 4,
            embed_dim=32,
            depths=(1, 1, 1, 1),
            num_heads=(1, 2, 2, 4),
        )
    if family == "mixer":
        return MlpMixer(num_classes=num_classes, img_size=size, patch_size=4, num_blocks=4, embed_dim=64)
    if family == "resmlp":
        return MlpMixer(
            num_classes=num_classes, img_size=size, patch_size=4, num_blocks=4, embed_dim=64, mlp_ratio=4,
            block_layer=ResBlock, stem_norm=False, mlp_layer=Mlp, norm_layer=Affine,
        )
    raise ValueError(f"unknown family {family!r}")


class SmallCNN(nn.Module):
    """A hand-written CNN: no timm attributes at all (no num_classes, feature_info or forward_head)."""

    def __init__(self, classes: int = 10, width: int = 8) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

        self.stem = block(3, width, 1)
        self.layer1 = block(width, width, 1)
        self.layer2 = block(width, 2 * width, 2)
        self.layer3 = block(2 * width, 4 * width, 2)
        self.layer4 = block(4 * width, 8 * width, 2)
        self.fc = nn.Linear(8 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(x.mean(dim=(2, 3)))
