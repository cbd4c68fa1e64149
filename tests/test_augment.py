"""The joint augmentation: image and mask stay aligned, masks keep their classes, seeds reproduce, previews."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from unet.augment import Augmenter, preview_pairs
from unet.config import AugmentConfig, DataConfig

SIZE = 96
LOW, STEP = 20, 200  # image = mask * STEP + LOW, so thresholding the image at the midpoint gives the mask back
MIN_AGREEMENT = 0.99

NOTHING = dict(flip=False, rotate90=False, rotate=0.0, zoom=0.0, shift=0.0, brightness=0.0, contrast=0.0)
GEOMETRIC = {
    "flip": dict(flip=True),
    "rotate90": dict(rotate90=True),
    "rotate": dict(rotate=40.0),
    "zoom": dict(zoom=0.4),
    "shift": dict(shift=0.3),
    "shear": dict(shear=30.0),
    "elastic": dict(elastic=1.0),
}
ALL_GEOMETRIC = {key: value for kw in GEOMETRIC.values() for key, value in kw.items()}
INTENSITY = {
    "brightness": dict(brightness=0.3),
    "contrast": dict(contrast=0.5),
    "gamma": dict(gamma=0.5),
    "noise": dict(noise=0.1),
    "blur": dict(blur=2.0),
}
EVERYTHING = {**ALL_GEOMETRIC, **{key: value for kw in INTENSITY.values() for key, value in kw.items()}}
SEED = tf.constant([3, 4], tf.int32)


def only(fill_mode: str = "reflect", **on: object) -> AugmentConfig:
    return AugmentConfig(**{**NOTHING, **on, "fill_mode": fill_mode})


def shapes_mask(classes: int, batch: int = 4, size: int = SIZE) -> np.ndarray:
    """Smooth blobs (ellipses) with labels 1..classes-1 on background 0, placed off-centre so transforms show."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    masks = np.zeros((batch, size, size, 1), np.int32)
    rng = np.random.default_rng(7)
    for b in range(batch):
        for label in range(1, classes):
            (cy, cx), (ry, rx) = rng.uniform(0.25, 0.75, 2), rng.uniform(0.1, 0.2, 2)
            inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
            masks[b, inside, 0] = label
    return masks


def image_for(masks: np.ndarray, channels: int, step: int = STEP) -> np.ndarray:
    return np.repeat((masks * step + LOW) / 255.0, channels, axis=-1).astype(np.float32)


def agreement(images: np.ndarray, masks: np.ndarray, step: int = STEP) -> float:
    """Share of pixels where the class nearest to the image's level equals the mask's class."""
    recovered = np.rint((images[..., :1] * 255.0 - LOW) / step)
    return float(np.mean(recovered == masks))


@pytest.mark.parametrize("fill_mode", ["reflect", "constant", "nearest"])
@pytest.mark.parametrize("name", [*GEOMETRIC, "all"])
def test_geometric_transforms_keep_image_and_mask_aligned(name: str, fill_mode: str) -> None:
    masks = shapes_mask(classes=2)
    images = image_for(masks, channels=3)
    augmenter = Augmenter(only(fill_mode, **(ALL_GEOMETRIC if name == "all" else GEOMETRIC[name])))
    out_images, out_masks = augmenter(tf.constant(images), tf.constant(masks), SEED)
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert out_images.dtype == tf.float32 and out_masks.dtype == tf.int32
    assert agreement(out_images.numpy(), out_masks.numpy()) >= MIN_AGREEMENT
    assert set(np.unique(out_masks)) <= {0, 1}
    assert not np.array_equal(out_masks.numpy(), masks), "the transform should have moved something"


@pytest.mark.parametrize("fill_mode", ["reflect", "constant", "nearest"])
def test_geometric_transforms_never_invent_classes_in_a_multiclass_mask(fill_mode: str) -> None:
    step = 60
    masks = shapes_mask(classes=4)
    images = image_for(masks, channels=1, step=step)
    out_images, out_masks = Augmenter(only(fill_mode, **ALL_GEOMETRIC))(tf.constant(images), tf.constant(masks), SEED)
    assert set(np.unique(out_masks)) <= set(np.unique(masks))
    # Bilinear images blend levels at class borders, where the nearest level may be a third class: allow for that.
    assert agreement(out_images.numpy(), out_masks.numpy(), step=step) >= 0.97


def test_flips_and_quarter_turns_move_whole_pixels_without_resampling() -> None:
    images = np.random.default_rng(0).uniform(size=(4, SIZE, SIZE, 1)).astype(np.float32)
    masks = shapes_mask(classes=3)
    out_images, out_masks = Augmenter(only(flip=True, rotate90=True))(tf.constant(images), tf.constant(masks), SEED)
    for before, after in zip(images, out_images.numpy(), strict=True):
        np.testing.assert_allclose(np.sort(after.ravel()), np.sort(before.ravel()), atol=1e-5)
    counts = lambda batch: [np.bincount(m.ravel()).tolist() for m in batch]  # noqa: E731
    assert counts(out_masks.numpy()) == counts(masks)


def test_constant_fill_puts_background_in_the_uncovered_corners() -> None:
    masks = np.ones((8, SIZE, SIZE, 1), np.int32)
    images = np.ones((8, SIZE, SIZE, 1), np.float32)
    out_images, out_masks = Augmenter(only("constant", rotate=45.0))(images, masks, SEED)
    uncovered = out_masks.numpy() == 0
    assert uncovered.any()
    assert out_images.numpy()[uncovered].max() < 0.5  # the image's fill (black) is where the mask's fill is


@pytest.mark.parametrize("name", list(INTENSITY))
def test_intensity_transforms_change_the_image_and_leave_the_mask_untouched(name: str) -> None:
    masks = shapes_mask(classes=3)
    images = image_for(masks, channels=3, step=50)
    out_images, out_masks = Augmenter(only(**INTENSITY[name]))(tf.constant(images), tf.constant(masks), SEED)
    np.testing.assert_array_equal(out_masks.numpy(), masks)
    assert np.abs(out_images.numpy() - images).max() > 0.01
    assert out_images.numpy().min() >= 0.0 and out_images.numpy().max() <= 1.0


def test_everything_on_keeps_images_in_unit_range_and_shapes_for_grayscale() -> None:
    masks = shapes_mask(classes=2)
    images = image_for(masks, channels=1)
    out_images, out_masks = Augmenter(only(**EVERYTHING))(tf.constant(images), tf.constant(masks), SEED)
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert out_images.numpy().min() >= 0.0 and out_images.numpy().max() <= 1.0


def test_same_seed_gives_identical_output_and_another_seed_differs() -> None:
    masks = shapes_mask(classes=2)
    images = image_for(masks, channels=3)
    augmenter = Augmenter(only(**EVERYTHING))
    first = augmenter(images, masks, SEED)
    again = augmenter(images, masks, SEED)
    other = augmenter(images, masks, tf.constant([5, 6]))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])


def test_samples_in_a_batch_get_different_transforms() -> None:
    masks = np.repeat(shapes_mask(classes=2, batch=1), 4, axis=0)
    out_masks = Augmenter(only(rotate=45.0))(image_for(masks, 1), masks, SEED)[1].numpy()
    assert len({m.tobytes() for m in out_masks}) == 4


def test_turning_one_transform_on_does_not_reshuffle_the_others() -> None:
    masks = shapes_mask(classes=2)
    images = image_for(masks, channels=1)
    plain = Augmenter(only(rotate=30.0))(images, masks, SEED)
    with_noise = Augmenter(only(rotate=30.0, noise=0.05))(images, masks, SEED)
    np.testing.assert_array_equal(plain[1], with_noise[1])


@pytest.mark.parametrize("cfg", [AugmentConfig(**{**EVERYTHING, "enabled": False}), only()], ids=["disabled", "zeros"])
def test_disabled_or_all_zero_augmentation_is_identity(cfg: AugmentConfig) -> None:
    masks = shapes_mask(classes=3)
    images = image_for(masks, channels=3, step=50)
    out_images, out_masks = Augmenter(cfg)(tf.constant(images), tf.constant(masks), SEED)
    np.testing.assert_array_equal(out_images.numpy(), images)
    np.testing.assert_array_equal(out_masks.numpy(), masks)


def test_runs_inside_a_tf_data_map_in_graph_mode_like_it_runs_eagerly() -> None:
    masks = shapes_mask(classes=2, batch=5, size=64)
    images = image_for(masks, channels=1)
    augmenter = Augmenter(only(**EVERYTHING))
    seeds = tf.data.Dataset.random(seed=1).batch(2)  # a fresh seed per batch
    pairs = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)  # last batch holds 1: shape [None, ...]
    dataset = tf.data.Dataset.zip(pairs, seeds).map(lambda pair, seed: (pair, seed, augmenter(pair[0], pair[1], seed)))
    batches = list(dataset.as_numpy_iterator())
    assert [pair[0].shape[0] for pair, _, _ in batches] == [2, 2, 1]
    for (batch_images, batch_masks), seed, (out_images, out_masks) in batches:
        eager_images, eager_masks = augmenter(batch_images, batch_masks, seed)
        np.testing.assert_allclose(out_images, eager_images, atol=1e-5)
        np.testing.assert_array_equal(out_masks, eager_masks)
        assert set(np.unique(out_masks)) <= {0, 1}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("resize", ["resize", "crop"])
def test_preview_pairs_returns_n_uint8_pairs_at_the_input_size(channels: int, resize: str) -> None:
    rng = np.random.default_rng(0)
    sizes = [(80, 100), (150, 120), (64, 64)]
    images = [rng.integers(0, 256, (h, w, 3) if channels == 3 else (h, w), dtype=np.uint8) for h, w in sizes]
    masks = [rng.integers(0, 3, (h, w), dtype=np.uint8) for h, w in sizes]
    data = DataConfig(input_size=64, channels=channels, resize=resize)
    pairs = preview_pairs(images, masks, AugmentConfig(elastic=0.3, blur=1.0), data, n=5, seed=1)
    assert len(pairs) == 5
    for image, mask in pairs:
        assert image.dtype == np.uint8 and image.shape == (64, 64, channels)
        assert mask.dtype == np.uint8 and mask.shape == (64, 64)
        assert set(np.unique(mask)) <= {0, 1, 2}


def test_preview_pairs_are_reproducible_per_seed() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (70, 90), dtype=np.uint8)]
    masks = [rng.integers(0, 2, (70, 90), dtype=np.uint8)]
    data = DataConfig(input_size=64)
    first = preview_pairs(images, masks, AugmentConfig(), data, n=2, seed=3)
    again = preview_pairs(images, masks, AugmentConfig(), data, n=2, seed=3)
    other = preview_pairs(images, masks, AugmentConfig(), data, n=2, seed=4)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0][0], other[0][0])
