"""The U-Net builder, its options, and the facts computed without training."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from unet import calibration
from unet.config import Config, DataConfig, ModelConfig, TrainConfig
from unet.errors import UserError
from unet.metrics import SegmentationLoss, make_loss, segmentation_metrics
from unet.model import (
    MAX_PARAMS,
    build_unet,
    count_params,
    estimate_epoch_seconds,
    model_facts,
    receptive_field,
)


def tiny(size: int = 32, channels: int = 1, **model: object) -> Config:
    values = {"depth": 2, "base_filters": 4, **model}
    return Config(model=ModelConfig(**values), data=DataConfig(input_size=size, channels=channels))


def layer_types(model: keras.Model, kind: type) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, kind)]


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6])
def test_every_depth_builds_and_returns_the_input_size(depth: int) -> None:
    model = build_unet(tiny(size=2**depth * 4, depth=depth))
    assert len(layer_types(model, keras.layers.MaxPooling2D)) == depth
    image = np.random.default_rng(0).random((1, 64, 64, 1), dtype=np.float32)
    assert model(image).shape == (1, 64, 64, 1)


def test_input_accepts_any_multiple_of_the_downsampling() -> None:
    model = build_unet(tiny(depth=3))
    assert tuple(model.input.shape) == (None, None, None, 1)
    assert model(np.zeros((2, 48, 80, 1), np.float32)).shape == (2, 48, 80, 1)


def test_binary_model_has_one_sigmoid_channel_and_multiclass_a_softmax() -> None:
    image = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    binary = build_unet(tiny(channels=3, num_classes=2))
    multi = build_unet(tiny(channels=3, num_classes=5))
    out = multi(image).numpy()
    assert binary(image).shape == (1, 32, 32, 1)
    assert out.shape == (1, 32, 32, 5)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)
    assert multi.get_layer("output").dtype_policy.compute_dtype == "float32"


def test_batch_norm_toggle_adds_bn_layers_and_drops_conv_biases() -> None:
    with_bn, without = build_unet(tiny(batch_norm=True)), build_unet(tiny(batch_norm=False))
    assert len(layer_types(with_bn, keras.layers.BatchNormalization)) == 2 * (2 * 2 + 1)
    assert not layer_types(without, keras.layers.BatchNormalization)
    assert not with_bn.get_layer("enc1_conv1").use_bias
    assert without.get_layer("enc1_conv1").use_bias


def test_leaky_relu_layers_carry_the_configured_slope() -> None:
    model = build_unet(tiny(activation="leaky_relu", leaky_alpha=0.23))
    leaky = layer_types(model, keras.layers.LeakyReLU)
    assert len(leaky) == 2 * (2 * 2 + 1)
    assert all(layer.negative_slope == pytest.approx(0.23) for layer in leaky)
    assert isinstance(build_unet(tiny(activation="elu")).get_layer("enc2_act1"), keras.layers.ELU)


def test_upsampling_choice_selects_transposed_conv_or_bilinear_resize() -> None:
    transpose, bilinear = build_unet(tiny(upsampling="transpose")), build_unet(tiny(upsampling="bilinear"))
    assert len(layer_types(transpose, keras.layers.Conv2DTranspose)) == 2
    assert not layer_types(transpose, keras.layers.UpSampling2D)
    assert not layer_types(bilinear, keras.layers.Conv2DTranspose)
    assert bilinear.get_layer("dec1_up").interpolation == "bilinear"


def test_average_pooling_replaces_max_pooling() -> None:
    model = build_unet(tiny(pooling="average"))
    assert len(layer_types(model, keras.layers.AveragePooling2D)) == 2
    assert not layer_types(model, keras.layers.MaxPooling2D)


def test_dropout_sits_in_the_bottleneck_or_in_every_block() -> None:
    bottleneck = build_unet(tiny(dropout=0.3, dropout_placement="bottleneck"))
    every = build_unet(tiny(dropout=0.3, dropout_placement="every_block"))
    assert [layer.name for layer in layer_types(bottleneck, keras.layers.Dropout)] == ["bottleneck_drop"]
    names = {layer.name for layer in layer_types(every, keras.layers.Dropout)}
    assert names == {"enc1_drop", "enc2_drop", "bottleneck_drop", "dec2_drop", "dec1_drop"}
    assert all(layer.rate == pytest.approx(0.3) for layer in layer_types(every, keras.layers.Dropout))
    assert not layer_types(build_unet(tiny(dropout=0.0)), keras.layers.Dropout)


def test_kernel_size_reaches_every_block_convolution() -> None:
    model = build_unet(tiny(kernel_size=5))
    assert model.get_layer("enc2_conv1").kernel_size == (5, 5)
    assert model.get_layer("dec1_conv2").kernel_size == (5, 5)


def test_layer_names_explain_the_architecture() -> None:
    names = {layer.name for layer in build_unet(tiny(depth=3)).layers}
    expected = {"enc2_conv1", "enc2_bn1", "enc2_act1", "enc2_pool", "bottleneck_conv1", "dec1_up", "dec1_concat"}
    assert expected | {"output"} <= names


def test_doubling_base_filters_roughly_quadruples_the_parameters() -> None:
    small, large = build_unet(tiny(base_filters=8)), build_unet(tiny(base_filters=16))
    assert 3.6 < large.count_params() / small.count_params() < 4.1


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"batch_norm": False, "upsampling": "transpose"},
        {"kernel_size": 5, "num_classes": 4, "depth": 3},
        {"activation": "leaky_relu", "pooling": "average", "dropout": 0.2, "dropout_placement": "every_block"},
    ],
)
def test_parameter_formula_matches_the_built_model(options: dict) -> None:
    cfg = tiny(size=64, channels=3, **options)
    assert count_params(cfg.model, 3) == build_unet(cfg).count_params() == model_facts(cfg).params


def test_a_model_too_large_to_train_is_refused_before_it_is_built() -> None:
    cfg = Config(model=ModelConfig(depth=6, base_filters=128, kernel_size=5), data=DataConfig(input_size=512))
    assert count_params(cfg.model, 1) > MAX_PARAMS
    with pytest.raises(UserError, match="million parameters.*lower the base filters"):
        build_unet(cfg)


def test_flops_match_a_hand_count() -> None:
    """depth 2, 4 base filters, one channel, 32x32, transposed conv: every multiply-add written out."""
    cfg = tiny(size=32, batch_norm=False, upsampling="transpose")

    def conv(side: int, k: int, c_in: int, c_out: int) -> int:
        return 2 * side * side * k * k * c_in * c_out

    hand = (
        conv(32, 3, 1, 4) + conv(32, 3, 4, 4)  # enc1
        + conv(16, 3, 4, 8) + conv(16, 3, 8, 8)  # enc2
        + conv(8, 3, 8, 16) + conv(8, 3, 16, 16)  # bottleneck
        + conv(8, 2, 16, 8) + conv(16, 3, 16, 8) + conv(16, 3, 8, 8)  # dec2: 2x2 kernel scattered from 8x8 inputs
        + conv(16, 2, 8, 4) + conv(32, 3, 8, 4) + conv(32, 3, 4, 4)  # dec1
        + conv(32, 1, 4, 1)  # output
    )
    assert model_facts(cfg).flops == hand


def test_flops_grow_with_the_image_area() -> None:
    small, large = model_facts(tiny(size=32)), model_facts(tiny(size=64))
    assert large.flops == 4 * small.flops


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_receptive_field_matches_the_gradient_footprint(upsampling: str) -> None:
    """An independent measurement: the input pixels whose gradient reaches the centre output pixel.

    Average pooling and ELU keep every path's gradient non-zero, so the footprint is the full field.
    """
    cfg = tiny(size=128, upsampling=upsampling, pooling="average", activation="elu", batch_norm=False)
    keras.utils.set_random_seed(0)
    model = build_unet(cfg)
    image = tf.Variable(np.random.default_rng(0).random((1, 128, 128, 1), dtype=np.float32))
    with tf.GradientTape() as tape:
        centre = model(image)[0, 64, 64, 0]
    rows = np.nonzero(np.abs(tape.gradient(centre, image).numpy()[0, :, :, 0]).sum(axis=1))[0]
    assert rows.max() - rows.min() + 1 == receptive_field(cfg.model)


def test_receptive_field_hand_count() -> None:
    # enc1 +4 (5), pool +1 (6), enc2 +8 (14), pool +2 (16), bottleneck +16 (32), dec2 +8 (40), dec1 +4 (44)
    assert receptive_field(ModelConfig(depth=2, kernel_size=3, upsampling="transpose")) == 44


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")  # saved before any training step
def test_saved_compiled_model_reloads_safely_with_the_same_predictions(tmp_path) -> None:
    cfg = tiny(num_classes=3, activation="leaky_relu", dropout=0.2, upsampling="transpose")
    model = build_unet(cfg)
    model.compile(optimizer="adam", loss=make_loss("dice_ce", 3, [0.5, 1.0, 2.0]), metrics=segmentation_metrics(3))
    images = np.random.default_rng(2).random((2, 32, 32, 1), dtype=np.float32)
    path = tmp_path / "model.keras"
    model.save(path)
    for compile in (False, True):
        reloaded = keras.models.load_model(path, compile=compile, safe_mode=True)
        np.testing.assert_allclose(reloaded(images), model(images), atol=1e-6)
    assert isinstance(reloaded.loss, SegmentationLoss) and reloaded.loss.class_weights == [0.5, 1.0, 2.0]


def test_memory_estimate_follows_the_documented_formula() -> None:
    """Every layer's output (measured by running the model) x batch x 4 bytes x 2, plus 16 bytes per weight."""
    cfg = tiny(size=32).replace(train=TrainConfig(batch_size=4))
    facts = model_facts(cfg)
    model = build_unet(cfg)
    every_output = keras.Model(model.input, [layer.output for layer in model.layers[1:]])
    values = 32 * 32 + sum(int(np.prod(out.shape)) for out in every_output(np.zeros((1, 32, 32, 1), np.float32)))
    assert facts.activation_bytes == values * 4 * 4 * 2
    assert facts.memory_bytes == facts.activation_bytes + 16 * facts.params
    double = model_facts(cfg.replace(train=TrainConfig(batch_size=8)))
    assert double.activation_bytes == 2 * facts.activation_bytes


def test_epoch_time_is_three_forward_passes_over_whole_batches() -> None:
    facts = model_facts(tiny(size=32))
    seconds = estimate_epoch_seconds(facts, num_images=10, batch_size=4, gflops=1.0)
    assert seconds == pytest.approx(12 * 3 * facts.flops / 1e9)
    with_time = model_facts(tiny(size=32), num_images=10, gflops_per_second=1.0)
    assert with_time.seconds_per_epoch == pytest.approx(
        estimate_epoch_seconds(facts, 10, with_time.batch_size, 1.0)
    )


def test_calibration_is_measured_once_per_machine_and_cached(tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(calibration, "measure_gflops", lambda: calls.append(1) or (42.0, 3.0))
    path = tmp_path / "calibration.json"
    assert calibration.cached_gflops(path) is None
    assert calibration.achieved_gflops(path) == 42.0
    assert calibration.achieved_gflops(path) == 42.0
    assert len(calls) == 1
    assert json.loads(path.read_text())[calibration.machine_key()]["gflops"] == 42.0


def test_memory_check_explains_a_model_that_does_not_fit() -> None:
    facts = model_facts(tiny(size=32))
    big = type(facts)(**{**facts.__dict__, "memory_bytes": 14_000_000_000, "batch_size": 16})
    check = calibration.fits_in_memory(big, memory=(8_000_000_000, 6_000_000_000))
    assert check.level == "error" and not check.ok
    assert check.message.startswith("this model needs about 14 GB for a batch of 16; this machine has 8.0 GB")
    assert "lower the batch size" in check.message
    assert calibration.fits_in_memory(big, memory=(64_000_000_000, 10_000_000_000)).level == "warning"
    assert calibration.fits_in_memory(facts, memory=(8_000_000_000, 6_000_000_000)).level == "ok"
    assert calibration.memory_warning(facts) is None
