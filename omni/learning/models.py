"""Model builders: a TSN-style 2D model over timm backbones, and 3D CNNs for clips.

Every model takes ``float[B, 3, T, H, W]`` and returns class logits.
- ``tsn_<timm name>`` (e.g. ``tsn_resnet10t``): a 2D CNN applied to each frame, scores averaged.
- ``c3d_small``: a SlowOnly-style 3D CNN (spatial-only convs early, spatio-temporal late),
  small enough to train on a CPU.
- ``c3d_patch`` (the default): a 4x4 stride-4 patch stem, then three 3x3x3 conv blocks, so the
  model sees time from its first block on (at 16x16 positions of a 64 px input): classes told
  apart by direction, rotation sense or growth need that (issue 33).
- ``r3d_18``, ``mc3_18``, ``r2plus1d_18``: torchvision's video ResNets, for GPU workers.
``pretrained`` loads named timm / torchvision weights from their caches or a local file, never
downloading (omni/learning/pretrained.py); the classifier is new for the user's classes.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


class TSN(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        return self.backbone(frames).view(b, t, -1).mean(dim=1)


def _block(cin: int, cout: int, temporal: int, stride: int) -> nn.Sequential:
    k = (temporal, 3, 3)
    p = (temporal // 2, 1, 1)
    return nn.Sequential(
        nn.Conv3d(cin, cout, k, stride=(1, stride, stride), padding=p, bias=False),
        nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, k, padding=p, bias=False),
        nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
    )


class C3DSmall(nn.Module):
    """Four stages of width w, 2w, 4w, 8w; temporal kernels only in the last two (SlowOnly)."""

    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.3):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv3d(3, w, (1, 5, 5), stride=(1, 2, 2), padding=(0, 2, 2), bias=False),
                                  nn.BatchNorm3d(w), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(_block(w, w, 1, 1), _block(w, 2 * w, 1, 2),
                                    _block(2 * w, 4 * w, 3, 2), _block(4 * w, 8 * w, 3, 2))
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(8 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def _conv_bn(cin: int, cout: int, k, stride, padding) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, k, stride=stride, padding=padding, bias=False), nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True)]


class C3DPatch(nn.Module):
    """A 4x4 stride-4 patch stem to ``width`` channels, then 3x3x3 conv-BN-ReLU blocks of 4/3, 8/3
    (stride 2 in time and space) and 4 (stride 2 in space) x ``width`` channels, global mean pool,
    dropout, linear head. At width 24 it is the plain reference of benchmarks/reference_model.py
    (24, 32, 64, 96 channels)."""

    def __init__(self, num_classes: int, width: int = 24, dropout: float = 0.3):
        super().__init__()
        w1, w2, w3 = round(4 * width / 3), round(8 * width / 3), 4 * width
        self.features = nn.Sequential(
            *_conv_bn(3, width, (1, 4, 4), (1, 4, 4), 0),
            *_conv_bn(width, w1, 3, 1, 1),
            *_conv_bn(w1, w2, 3, (2, 2, 2), 1),
            *_conv_bn(w2, w3, 3, (1, 2, 2), 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(w3, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


VIDEO_ARCHS = ("c3d_patch", "c3d_small", "r3d_18", "mc3_18", "r2plus1d_18")


def arch_problem(arch: str) -> str:
    """Why ``arch`` cannot be built ('' when it can), without building it."""
    if arch in VIDEO_ARCHS:
        return ""
    if arch.startswith("tsn_"):
        import timm

        return "" if timm.is_model(arch[4:]) else f"unknown timm model {arch[4:]!r} in arch {arch!r}"
    return f"unknown arch {arch!r}: use {', '.join(VIDEO_ARCHS)} or tsn_<timm model>"


def build_model(arch: str, num_classes: int, width: int = 32, pretrained: str | Path | None = None) -> nn.Module:
    """The network ``arch`` for ``num_classes`` classes, with ``pretrained`` weights when given: a
    ``timm:`` or ``torchvision:`` name (read from the library's cache) or a local file."""
    from . import pretrained as weights

    named = weights.is_named(pretrained)
    if named:
        want = weights.expected_arch(str(pretrained))
        if want != arch:
            raise ValueError(f"pretrained {pretrained} are weights of {want}, not of arch {arch}")
    if arch == "c3d_patch":
        model = C3DPatch(num_classes, width)
    elif arch == "c3d_small":
        model = C3DSmall(num_classes, width)
    elif arch in ("r3d_18", "mc3_18", "r2plus1d_18"):
        import torchvision.models.video as tvv

        model = getattr(tvv, arch)(weights=None, num_classes=num_classes)
        if named:
            weights.load_torchvision(model, str(pretrained).partition(":")[2])
    elif arch.startswith("tsn_"):
        import timm

        name = arch[4:]
        if named:
            return TSN(weights.build_timm(str(pretrained).partition(":")[2], num_classes))
        try:
            backbone = timm.create_model(name, pretrained=False, num_classes=num_classes)
        except RuntimeError as exc:
            raise ValueError(f"unknown timm model {name!r} in arch {arch!r}: {exc}") from None
        model = TSN(backbone)
    else:
        raise ValueError(f"unknown arch {arch!r}: use {', '.join(VIDEO_ARCHS)} or tsn_<timm model>")
    if pretrained is not None and not named:
        weights.load_file(model, Path(pretrained), arch)
    return model


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep every BatchNorm layer's running statistics as they are (eval mode) while the rest of
    ``model`` trains; their scale and shift still learn. Call after ``model.train()``."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def memory_format(arch: str) -> torch.memory_format:
    """The layout a model trains fastest in: channels-last for the 3D CNNs (``c3d_patch``'s joint
    step on 2 CPU cores: 106 against 117 ms in bf16, 89 against 103 ms in fp32), the default for
    the 2D TSN models (their 5D input is reshaped to frames)."""
    return torch.contiguous_format if is_2d(arch) else torch.channels_last_3d


def is_2d(arch: str) -> bool:
    return arch.startswith("tsn_")
