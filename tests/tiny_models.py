"""Tiny timm models of every family for fast CPU tests (randomly initialised, 10 classes)."""

from __future__ import annotations

from timm.layers import Mlp
from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock

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
