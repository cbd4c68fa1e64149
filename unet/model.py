"""The U-Net, built from a `Config`, and what can be known about it before training.

The network is assembled from small named block factories (as in segmentation_models), so `model.summary()`
explains itself: encoder level `i` is `enc{i}_*` (level 1 at full resolution), the bottleneck is `bottleneck_*`,
and decoder level `i` is `dec{i}_*`, the mirror of `enc{i}`: it works at the same resolution with the same
number of filters and concatenates `enc{i}`'s output as its skip connection. The last layer is `output`.

No Lambda layers, so every model loads with `keras.models.load_model(path, safe_mode=True)`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

from unet.config import Activation, Config, DropoutPlacement, ModelConfig, Pooling, Upsampling
from unet.errors import UserError

KerasTensor = keras.KerasTensor
Block = Callable[[KerasTensor], KerasTensor]

# Keras' default 0.99 averages over ~100 steps: a small dataset has 5-10 steps per epoch, so validation saw
# statistics many epochs old and its Dice lagged far behind training's (ISBI: 0.87 vs 0.93 after 15 epochs).
BN_MOMENTUM = 0.9
CONVS_PER_BLOCK = 2  # two convolutions per level, as in the 2015 paper
POOL_SIZE = 2  # each level halves the image
TRANSPOSE_KERNEL = 2  # 2x2 "up-convolution" with stride 2, as in the paper: no overlapping outputs
BILINEAR_CONV_KERNEL = 3  # the convolution after a bilinear resize; 3x3 keeps it centred

# Above this the weights alone (with gradients and Adam's two moments) take 16 bytes per parameter x this = 8 GB.
MAX_PARAMS = 500_000_000

BYTES_PER_FLOAT = 4
GRADIENT_FACTOR = 2  # activations are kept for the backward pass, which needs about as much again
WEIGHT_COPIES = 4  # weights, gradients, and Adam's first and second moments
TRAIN_FLOPS_FACTOR = 3  # a training step costs about 3 forward passes (forward + two for the backward)


# ----------------------------------------------------------------------------------------------------------------
# Block factories
# ----------------------------------------------------------------------------------------------------------------


def activation_layer(m: ModelConfig, name: str) -> layers.Layer:
    """The configured non-linearity as its own named layer (so the LeakyReLU slope is visible in the model)."""
    if m.activation == Activation.LEAKY_RELU:
        return layers.LeakyReLU(negative_slope=m.leaky_alpha, name=name)
    if m.activation == Activation.ELU:
        return layers.ELU(name=name)
    return layers.ReLU(name=name)


def conv_bn_act(filters: int, m: ModelConfig, prefix: str, index: int) -> Block:
    """Conv -> (BatchNorm) -> activation. The convolution has no bias under batch norm, which would cancel it."""

    def block(x: KerasTensor) -> KerasTensor:
        x = layers.Conv2D(
            filters,
            m.kernel_size,
            padding="same",
            use_bias=not m.batch_norm,
            kernel_initializer="he_normal",
            name=f"{prefix}_conv{index}",
        )(x)
        if m.batch_norm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn{index}")(x)
        return activation_layer(m, f"{prefix}_act{index}")(x)

    return block


def double_conv(filters: int, m: ModelConfig, prefix: str, dropout: bool) -> Block:
    """The convolutions of one level, then dropout if this level has it."""

    def block(x: KerasTensor) -> KerasTensor:
        for index in range(1, CONVS_PER_BLOCK + 1):
            x = conv_bn_act(filters, m, prefix, index)(x)
        if dropout and m.dropout > 0:
            x = layers.Dropout(m.dropout, name=f"{prefix}_drop")(x)
        return x

    return block


def down_sample(m: ModelConfig, prefix: str) -> layers.Layer:
    if m.pooling == Pooling.AVERAGE:
        return layers.AveragePooling2D(POOL_SIZE, name=f"{prefix}_pool")
    return layers.MaxPooling2D(POOL_SIZE, name=f"{prefix}_pool")


def up_sample(filters: int, m: ModelConfig, prefix: str) -> Block:
    """Double the resolution and bring the channels down to this level's filters.

    Either a transposed convolution (learned), or a bilinear resize followed by a convolution (no checkerboard
    artefacts). Both are linear: the convolutions after the concatenation bring the non-linearity.
    """

    def block(x: KerasTensor) -> KerasTensor:
        if m.upsampling == Upsampling.TRANSPOSE:
            return layers.Conv2DTranspose(
                filters, TRANSPOSE_KERNEL, strides=POOL_SIZE, padding="same", name=f"{prefix}_up"
            )(x)
        x = layers.UpSampling2D(POOL_SIZE, interpolation="bilinear", name=f"{prefix}_up")(x)
        return layers.Conv2D(filters, BILINEAR_CONV_KERNEL, padding="same", name=f"{prefix}_upconv")(x)

    return block


def output_head(num_classes: int) -> layers.Layer:
    """1x1 convolution to class probabilities, in float32 so mixed precision cannot round them."""
    if num_classes == 2:
        return layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="output")
    return layers.Conv2D(num_classes, 1, activation="softmax", dtype="float32", name="output")


# ----------------------------------------------------------------------------------------------------------------
# The builder
# ----------------------------------------------------------------------------------------------------------------


def level_filters(m: ModelConfig) -> list[int]:
    """Filters per level, from level 1 (full resolution) to the bottleneck (level depth + 1)."""
    return [m.base_filters * 2**level for level in range(m.depth + 1)]


def build_unet(cfg: Config) -> keras.Model:
    """The U-Net of `cfg.model` for `cfg.data.channels` input channels.

    Input: float32 [batch, H, W, channels] with H and W any multiple of 2**depth.
    Output: [batch, H, W, 1] sigmoid probabilities of the foreground when `num_classes == 2`,
    [batch, H, W, num_classes] softmax probabilities otherwise.

    Raises:
        UserError: when the model would be too large to train (see `MAX_PARAMS`).
    """
    return _assemble(cfg.model, cfg.data.channels, None)


def _assemble(m: ModelConfig, channels: int, size: int | None) -> keras.Model:
    params = count_params(m, channels)
    if params > MAX_PARAMS:
        raise UserError(
            f"this model would have {params / 1e6:,.0f} million parameters (at most {MAX_PARAMS / 1e6:,.0f} million "
            f"can be trained here); lower the base filters ({m.base_filters}) or the depth ({m.depth})"
        )
    filters = level_filters(m)
    dropout_everywhere = m.dropout_placement == DropoutPlacement.EVERY_BLOCK
    inputs = keras.Input(shape=(size, size, channels), dtype="float32", name="image")

    x = inputs
    skips = []
    for level in range(1, m.depth + 1):
        x = double_conv(filters[level - 1], m, f"enc{level}", dropout_everywhere)(x)
        skips.append(x)
        x = down_sample(m, f"enc{level}")(x)

    x = double_conv(filters[m.depth], m, "bottleneck", dropout=True)(x)

    for level in range(m.depth, 0, -1):
        prefix = f"dec{level}"
        x = up_sample(filters[level - 1], m, prefix)(x)
        x = layers.Concatenate(name=f"{prefix}_concat")([x, skips[level - 1]])
        x = double_conv(filters[level - 1], m, prefix, dropout_everywhere)(x)

    outputs = output_head(m.num_classes)(x)
    return keras.Model(inputs, outputs, name="unet")


# ----------------------------------------------------------------------------------------------------------------
# Facts without training
# ----------------------------------------------------------------------------------------------------------------


def count_params(m: ModelConfig, channels: int) -> int:
    """The parameter count by formula, cheap enough to refuse a huge model before allocating it.

    Tests check that it equals `build_unet(cfg).count_params()`.
    """
    k2 = m.kernel_size**2
    filters = level_filters(m)

    def conv(c_in: int, c_out: int) -> int:
        weights = c_in * c_out * k2
        return weights + (4 * c_out if m.batch_norm else c_out)  # BN: gamma, beta, moving mean and variance

    def level(c_in: int, c_out: int) -> int:
        return conv(c_in, c_out) + conv(c_out, c_out)

    total, c_in = 0, channels
    for f in filters:  # encoder levels, then the bottleneck
        total += level(c_in, f)
        c_in = f
    up_k2 = TRANSPOSE_KERNEL**2 if m.upsampling == Upsampling.TRANSPOSE else BILINEAR_CONV_KERNEL**2
    for f in reversed(filters[:-1]):
        total += c_in * f * up_k2 + f
        total += level(2 * f, f)
        c_in = f
    outputs = 1 if m.num_classes == 2 else m.num_classes
    return total + c_in * outputs + outputs


def receptive_field(m: ModelConfig) -> int:
    """How many input pixels (along one side) can influence one output pixel, along the path through the bottleneck.

    Standard recurrence: a layer with kernel k widens the field by (k - 1) x the current stride between
    neighbouring features (`jump`); pooling doubles the jump; up-sampling halves it. A bilinear resize mixes
    2 neighbours, so it widens the field by one jump of the coarse grid; a 2x2 stride-2 transposed convolution
    gives each output a single input, so it does not widen it.
    """
    field, jump = 1, 1
    conv_growth = CONVS_PER_BLOCK * (m.kernel_size - 1)
    for _ in range(m.depth):
        field += conv_growth * jump
        field += (POOL_SIZE - 1) * jump
        jump *= POOL_SIZE
    field += conv_growth * jump  # bottleneck
    for _ in range(m.depth):
        if m.upsampling == Upsampling.BILINEAR:
            field += (POOL_SIZE - 1) * jump
            jump //= POOL_SIZE
            field += (BILINEAR_CONV_KERNEL - 1) * jump
        else:
            jump //= POOL_SIZE
        field += conv_growth * jump
    return field


@dataclass(frozen=True)
class ModelFacts:
    """What a configuration costs, known before training.

    Conventions: `flops` counts 2 operations per multiply-add of the convolutions (normal and transposed)
    and dense layers, for one forward pass of one image of `input_size` x `input_size`; batch norm, activations,
    pooling, resizing and biases are left out (they are a few percent). `memory_bytes` is a training estimate
    for `batch_size` images: every layer's output x batch x 4 bytes x 2 (kept for the backward pass), plus
    16 bytes per parameter (weights, gradients, Adam's two moments). `seconds_per_epoch` is None until the
    number of images is known.
    """

    params: int
    flops: int
    input_size: int
    batch_size: int
    activation_bytes: int
    memory_bytes: int
    receptive_field: int
    num_images: int | None = None
    seconds_per_epoch: float | None = None
    gflops_per_second: float | None = None  # this machine's measured training throughput

    @property
    def gflops(self) -> float:
        """Forward GFLOPs per image."""
        return self.flops / 1e9

    @property
    def memory_gb(self) -> float:
        return self.memory_bytes / 1e9


def model_facts(cfg: Config, num_images: int | None = None, *, gflops_per_second: float | None = None) -> ModelFacts:
    """Parameters, compute, memory and receptive field of `cfg`'s model, and its time per epoch when
    `num_images` and this machine's `gflops_per_second` (`unet.calibration.achieved_gflops()`) are given.

    The model is built once per (model, channels, input size) and the numbers cached, so sliders stay quick.
    """
    params, flops, activations = _layer_costs(cfg.model, cfg.data.channels, cfg.data.input_size)
    batch = cfg.train.batch_size
    activation_bytes = activations * batch * BYTES_PER_FLOAT * GRADIENT_FACTOR
    facts = ModelFacts(
        params=params,
        flops=flops,
        input_size=cfg.data.input_size,
        batch_size=batch,
        activation_bytes=activation_bytes,
        memory_bytes=activation_bytes + params * BYTES_PER_FLOAT * WEIGHT_COPIES,
        receptive_field=receptive_field(cfg.model),
    )
    if num_images is None or gflops_per_second is None:
        return facts
    seconds = estimate_epoch_seconds(facts, num_images, batch, gflops_per_second)
    return dataclasses.replace(
        facts, num_images=num_images, seconds_per_epoch=seconds, gflops_per_second=gflops_per_second
    )


def estimate_epoch_seconds(facts: ModelFacts, num_images: int, batch_size: int, gflops: float) -> float:
    """Seconds for one training epoch: images (rounded up to whole batches) x 3 x forward FLOPs / throughput."""
    if gflops <= 0:
        raise ValueError(f"throughput must be positive, not {gflops}")
    images = math.ceil(num_images / batch_size) * batch_size
    return images * TRAIN_FLOPS_FACTOR * facts.flops / (gflops * 1e9)


@functools.lru_cache(maxsize=64)
def _layer_costs(m: ModelConfig, channels: int, size: int) -> tuple[int, int, int]:
    """(params, forward FLOPs per image, activation values per image), from a model built at a fixed size.

    Only the numbers are cached, not the model, so the cache holds no weights.
    """
    model = _assemble(m, channels, size)
    flops = sum(layer_flops(layer) for layer in model.layers)
    activations = sum(math.prod(layer.output.shape[1:]) for layer in model.layers)
    return model.count_params(), flops, activations


def layer_flops(layer: layers.Layer) -> int:
    """Forward FLOPs (2 per multiply-add) of one layer for one image; 0 for layers that do not multiply weights."""
    if isinstance(layer, layers.Conv2DTranspose):
        # Every input pixel scatters a kernel-sized patch to the output.
        _, h, w, c_in = layer.input.shape
        kh, kw = layer.kernel_size
        return 2 * h * w * kh * kw * c_in * layer.filters
    if isinstance(layer, layers.Conv2D):
        c_in = layer.input.shape[-1]
        _, h, w, c_out = layer.output.shape
        kh, kw = layer.kernel_size
        return 2 * h * w * kh * kw * c_in * c_out
    if isinstance(layer, layers.Dense):
        return 2 * math.prod(layer.input.shape[1:]) * layer.units
    return 0
