"""Named starting points for the Model page, so a first training needs no knowledge of the sliders.

A preset sets the architecture and the training budget; it keeps what comes from the dataset (channels,
number of classes, normalisation) and the augmentation.

Measured on a 2-core CPU (TF 2.21, an otherwise idle machine; `python -m unet bench --quality`), with the default
augmentation (flips, quarter turns, brightness, contrast) and the warm-up + cosine learning-rate schedule:
Quick demo: about 1.6 s per epoch of the 48-image cells demo data (5 steps of 8, validation, checkpoint), so its
20 epochs take under 40 s; validation Dice 0.94 after 8 epochs (17 s), 0.97 after 13 (27 s).
Balanced: about 1.9 s per epoch of the 30 ISBI 2012 EM images (6 steps of 4 crops of 256x256), so its 150
epochs take about 5 minutes; whole-image validation Dice of the cell class 0.945 (5-minute trials, same data):
  16 base filters, plateau schedule, free rotation/zoom/shift on (the previous Balanced)   0.939
  16 base filters, cosine                                                                   0.939
  8 base filters, cosine (twice the steps in the same time)                                 0.941
  16 base filters, cosine, exact augmentation only                                          0.941
  8 base filters, cosine, exact augmentation only (this preset)                             0.945
  same with a learning rate of 3e-3                                                         0.945
The network is small for the task and still improving at 5 minutes, so in a fixed time more steps of a narrower
network beat fewer steps of a wider one.
Classic: 30-37 s per step (batch 2 at 512x512: hours per run on a CPU, hence `slow_on_cpu`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from unet.config import Config
from unet.errors import UserError


@dataclass(frozen=True)
class Preset:
    """A named set of config values; each mapping holds only the keys it changes in that section."""

    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    slow_on_cpu: bool = False  # the page warns before training this on a machine without a GPU


QUICK_DEMO = Preset(
    name="Quick demo",
    description="A small U-Net that learns the 128x128 demo data in under a minute on a laptop.",
    model={"depth": 3, "base_filters": 16, "kernel_size": 3, "batch_norm": True, "activation": "relu",
           "dropout": 0.0, "pooling": "max", "upsampling": "bilinear"},
    data={"input_size": 128, "resize": "resize"},
    train={"epochs": 20, "batch_size": 8, "learning_rate": 1e-3, "optimizer": "adam", "loss": "dice_ce",
           "lr_schedule": "cosine", "early_stopping_patience": 8, "reduce_lr_patience": 4},
)

BALANCED = Preset(
    name="Balanced",
    description="A sound default for real images such as 512x512 microscopy: 256-pixel crops, within minutes on a CPU.",
    model={"depth": 4, "base_filters": 8, "kernel_size": 3, "batch_norm": True, "activation": "relu",
           "dropout": 0.1, "dropout_placement": "bottleneck", "pooling": "max", "upsampling": "bilinear"},
    data={"input_size": 256, "resize": "crop"},
    train={"epochs": 150, "batch_size": 4, "learning_rate": 1e-3, "optimizer": "adam", "loss": "dice_ce",
           "lr_schedule": "cosine", "early_stopping_patience": 30, "reduce_lr_patience": 5},
)

CLASSIC = Preset(
    name="Classic U-Net (2015)",
    description="The network of Ronneberger et al.: depth 4, 64 filters, 31 million parameters. Needs a GPU.",
    model={"depth": 4, "base_filters": 64, "kernel_size": 3, "batch_norm": False, "activation": "relu",
           "dropout": 0.5, "dropout_placement": "bottleneck", "pooling": "max", "upsampling": "transpose"},
    data={"input_size": 512, "resize": "crop"},
    train={"epochs": 50, "batch_size": 2, "learning_rate": 1e-4, "optimizer": "adam", "loss": "dice_ce",
           "lr_schedule": "cosine", "early_stopping_patience": 10, "reduce_lr_patience": 5},
    slow_on_cpu=True,
)

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (QUICK_DEMO, BALANCED, CLASSIC)}


def apply_preset(cfg: Config, name: str) -> Config:
    """`cfg` with the preset's values; channels, classes, normalisation and augmentation are kept.

    Raises:
        UserError: for an unknown preset name.
    """
    if name not in PRESETS:
        raise UserError(f"there is no preset called '{name}' (there are: {', '.join(PRESETS)})")
    preset = PRESETS[name]
    return cfg.replace(
        model=dataclasses.replace(cfg.model, **preset.model),
        data=dataclasses.replace(cfg.data, **preset.data),
        train=dataclasses.replace(cfg.train, **preset.train),
    )
