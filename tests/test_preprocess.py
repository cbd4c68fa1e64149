"""Resizing, cropping and normalisation of single pairs: sizes, dtypes, seeded crops, masks never blended."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from unet.preprocess import center_or_resize, normalise, reflect_index, resize_pair

SEED = tf.constant([1, 2], tf.int32)


def coded_pair(height: int, width: int, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """An image whose pixel values code their position, and a 3-class striped mask."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = ((rows * 7 + cols * 3) % 256).astype(np.uint8)[..., None].repeat(channels, axis=-1)
    mask = ((rows // 5 + cols // 7) % 3).astype(np.uint8)[..., None]
    return image, mask


def test_resize_mode_stretches_to_a_square_with_float_image_and_int_mask() -> None:
    image, mask = coded_pair(50, 90, channels=3)
    out_image, out_mask = resize_pair(image, mask, 64, "resize")
    assert out_image.shape == (64, 64, 3) and out_image.dtype == tf.float32
    assert out_mask.shape == (64, 64, 1) and out_mask.dtype == tf.int32
    assert out_image.numpy().min() >= 0.0 and out_image.numpy().max() <= 1.0


def test_resizing_never_blends_mask_classes() -> None:
    image, mask = coded_pair(123, 77)
    for size in (32, 200):
        _, out_mask = resize_pair(image, mask, size, "resize")
        assert set(np.unique(out_mask)) <= {0, 1, 2}


def test_crop_of_a_larger_image_is_an_exact_window_of_it() -> None:
    image, mask = coded_pair(100, 140)
    out_image, out_mask = resize_pair(image, mask, 64, "crop", SEED)
    as_uint8 = np.rint(out_image.numpy() * 255).astype(np.uint8)
    windows = [(top, left) for top in range(100 - 64 + 1) for left in range(140 - 64 + 1)]
    window = lambda array, top, left: array[top : top + 64, left : left + 64]  # noqa: E731
    assert any(
        np.array_equal(window(image, *at), as_uint8) and np.array_equal(window(mask, *at), out_mask.numpy())
        for at in windows
    ), "the crop is not the same window of the image and of the mask"


def test_crop_is_reproducible_per_seed_and_moves_with_the_seed() -> None:
    image, mask = coded_pair(200, 200)
    first = resize_pair(image, mask, 64, "crop", SEED)[0].numpy()
    again = resize_pair(image, mask, 64, "crop", SEED)[0].numpy()
    others = [resize_pair(image, mask, 64, "crop", tf.constant([s, 9]))[0].numpy() for s in range(4)]
    np.testing.assert_array_equal(first, again)
    assert any(not np.array_equal(first, other) for other in others)


def test_crop_needs_a_seed_and_unknown_modes_are_refused() -> None:
    image, mask = coded_pair(20, 20)
    with pytest.raises(ValueError, match="seed"):
        resize_pair(image, mask, 16, "crop")
    with pytest.raises(ValueError, match="unknown mode"):
        resize_pair(image, mask, 16, "squash")


def test_crop_of_a_smaller_image_pads_by_reflection_around_the_centre() -> None:
    image, mask = coded_pair(40, 50)
    out_image, out_mask = resize_pair(image, mask, 64, "crop", SEED)
    pad = ((12, 12), (7, 7), (0, 0))
    expected_image = np.pad(image, pad, mode="symmetric")
    np.testing.assert_array_equal(np.rint(out_image.numpy() * 255).astype(np.uint8), expected_image)
    np.testing.assert_array_equal(out_mask.numpy(), np.pad(mask, pad, mode="symmetric"))


def test_crop_works_when_the_padding_is_wider_than_the_image() -> None:
    image, mask = coded_pair(10, 12)
    out_image, out_mask = resize_pair(image, mask, 64, "crop", SEED)
    assert out_image.shape == (64, 64, 1) and out_mask.shape == (64, 64, 1)
    assert set(np.unique(out_mask)) <= set(np.unique(mask))


def test_validation_crop_is_the_centre_window_every_time() -> None:
    image, mask = coded_pair(100, 80)
    out_image, out_mask = center_or_resize(image, mask, 64, "crop")
    np.testing.assert_array_equal(np.rint(out_image.numpy() * 255).astype(np.uint8), image[18:82, 8:72])
    np.testing.assert_array_equal(out_mask.numpy(), mask[18:82, 8:72])


def test_validation_resize_matches_training_resize() -> None:
    image, mask = coded_pair(70, 90, channels=3)
    expected = resize_pair(image, mask, 48, "resize")
    actual = center_or_resize(image, mask, 48, "resize")
    np.testing.assert_array_equal(actual[0], expected[0])
    np.testing.assert_array_equal(actual[1], expected[1])


def test_resize_pair_runs_in_tf_data_with_images_of_different_sizes() -> None:
    pairs = [coded_pair(60, 90), coded_pair(130, 70)]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(pairs),
        output_signature=(
            tf.TensorSpec([None, None, 1], tf.uint8),
            tf.TensorSpec([None, None, 1], tf.uint8),
        ),
    )
    for mode in ("resize", "crop"):
        mapped = dataset.map(lambda image, mask, mode=mode: resize_pair(image, mask, 64, mode, SEED)).batch(2)
        images, masks = next(iter(mapped))
        assert images.shape == (2, 64, 64, 1) and masks.shape == (2, 64, 64, 1)


def test_normalise_leaves_unit_images_and_standardises_with_dataset_statistics() -> None:
    images = tf.constant([[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(normalise(images, "unit"), images)
    np.testing.assert_allclose(normalise(images, "standard", mean=0.5, std=0.25), [[-2.0, 0.0, 2.0]])
    assert np.isfinite(normalise(images, "standard", mean=0.5, std=0.0)).all()
    with pytest.raises(ValueError, match="unknown mode"):
        normalise(images, "minmax")


def test_reflect_index_mirrors_like_numpy_symmetric_padding_even_far_outside() -> None:
    size = 5
    index = tf.range(-17, 23)
    expected = np.pad(np.arange(size), (17, 18), mode="symmetric")
    np.testing.assert_array_equal(reflect_index(index, size), expected)
