"""The tf.data input pipeline: shapes, dtypes, normalisation, the fixed split, reproducibility, the memory budget."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from unet import pipeline, splits
from unet.augment import Augmenter
from unet.config import AugmentConfig, Config, DataConfig, ModelConfig, TrainConfig
from unet.dataset import ingest
from unet.demo import write_demo_dataset
from unet.errors import UserError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    stored, _ = ingest(write_demo_dataset(root / "raw", size=64, count=10), "demo", root / "datasets")
    return stored


def _config(**train) -> Config:
    return Config(data=DataConfig(input_size=32), model=ModelConfig(depth=2, base_filters=4),
                  train=TrainConfig(**{"batch_size": 4, **train}))


def test_split_is_fixed_by_the_seed_disjoint_and_complete():
    stems = [f"s{i:02d}" for i in range(20)]
    a = splits.split_stems(stems, 0.2, seed=1)
    assert a == splits.split_stems(list(reversed(stems)), 0.2, seed=1)
    assert not set(a.train) & set(a.val)
    assert sorted(a.train + a.val) == stems and len(a.val) == 4
    assert splits.split_stems(stems, 0.2, seed=2) != a


def test_split_keeps_one_pair_on_each_side_and_refuses_a_single_pair():
    assert splits.split_stems(["a", "b"], 0.5, 0) in (splits.Split(["a"], ["b"]), splits.Split(["b"], ["a"]))
    with pytest.raises(UserError, match="at least 2"):
        splits.split_stems(["a"], 0.2, 0)


def test_training_batches_have_the_input_size_dtypes_and_unit_range(dataset):
    cfg = _config()
    stems = dataset.stems[:8]
    built = pipeline.train_pipeline(dataset, stems, cfg, Augmenter(cfg.augment))
    images, masks = next(iter(built.dataset))
    assert built.steps == 2
    assert images.shape == (4, 32, 32, 1) and images.dtype.name == "float32"
    assert masks.shape == (4, 32, 32, 1) and masks.dtype.name == "int32"
    assert float(images.numpy().min()) >= 0.0 and float(images.numpy().max()) <= 1.0
    assert set(np.unique(masks.numpy())) <= set(range(dataset.num_classes))


def test_standard_normalisation_uses_the_dataset_statistics(dataset):
    cfg = _config().replace(data=DataConfig(input_size=32, normalisation="standard"))
    images = np.concatenate([b[0].numpy() for b in pipeline.eval_pipeline(dataset, dataset.stems, cfg).dataset])
    assert abs(images.mean()) < 0.25 and 0.6 < images.std() < 1.4


def test_validation_is_in_order_unaugmented_and_covers_every_pair_once(dataset):
    cfg = _config()
    built = pipeline.eval_pipeline(dataset, dataset.stems[:5], cfg)
    first = [b for b in built.dataset]
    second = [b for b in built.dataset]
    assert [len(b[0]) for b in first] == [4, 1] and built.steps == 2
    for (a, _), (b, _) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_tiny_dataset_smaller_than_a_batch_still_gives_full_batches(dataset):
    cfg = _config(batch_size=8)
    built = pipeline.train_pipeline(dataset, dataset.stems[:3], cfg)
    images, masks = next(iter(built.dataset))
    assert built.steps == 1 and images.shape[0] == 8 and masks.shape[0] == 8


def test_same_seed_same_batches_and_the_cache_does_not_change_them(dataset):
    cfg = _config()
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, resize="crop"), augment=AugmentConfig(rotate=30, noise=0.05))
    take = lambda built: [b[0].numpy() for b in built.dataset.take(3)]  # noqa: E731
    cached = take(pipeline.train_pipeline(dataset, dataset.stems, cfg, Augmenter(cfg.augment), cache=True))
    streamed = take(pipeline.train_pipeline(dataset, dataset.stems, cfg, Augmenter(cfg.augment), cache=False))
    for a, b in zip(cached, streamed, strict=True):
        np.testing.assert_array_equal(a, b)
    resumed = take(pipeline.train_pipeline(dataset, dataset.stems, cfg, Augmenter(cfg.augment), start_step=3))
    assert not np.array_equal(cached[0], resumed[0])  # a resumed run draws new augmentations


def test_memory_budget_decides_the_cache(dataset):
    stems = dataset.stems
    per_pair = 64 * 64 * 2  # grayscale image + mask, uint8
    assert pipeline.decoded_bytes(dataset, stems, channels=1) == per_pair * len(stems)
    assert pipeline.plan_cache(8 * per_pair, 2 * per_pair, budget=10 * per_pair) == (True, True)
    assert pipeline.plan_cache(8 * per_pair, 2 * per_pair, budget=9 * per_pair) == (False, True)
    assert pipeline.plan_cache(8 * per_pair, 2 * per_pair, budget=per_pair) == (False, False)
    streamed = pipeline.train_pipeline(dataset, stems, _config(), cache=False)
    cached = pipeline.train_pipeline(dataset, stems, _config(), cache=True)
    assert not streamed.cached and b"CacheDataset" not in _graph(streamed.dataset)
    assert cached.cached and b"CacheDataset" in _graph(cached.dataset)
    assert next(iter(streamed.dataset))[0].shape == (4, 32, 32, 1)


def _graph(ds) -> bytes:
    """The serialised tf.data graph, to see which ops a pipeline holds."""
    return tf.raw_ops.DatasetToGraphV2(input_dataset=ds._variant_tensor).numpy()


def test_class_weights_favour_the_rare_class_within_a_bounded_ratio():
    weights = pipeline.class_weights(np.array([900, 100, 0]))
    assert weights[1] / weights[0] == pytest.approx(9.0)
    rare = pipeline.class_weights(np.array([999_999, 1]))
    assert rare[1] / rare[0] == pytest.approx(10.0) and np.mean(rare) == pytest.approx(1.0)


def test_class_pixel_counts_add_up_to_every_mask_pixel(dataset):
    counts = pipeline.class_pixel_counts(dataset, dataset.stems[:3], dataset.num_classes)
    assert counts.sum() == 3 * 64 * 64 and counts[1] > 0


def test_the_split_puts_a_rare_class_into_validation_where_the_data_allow():
    """A class in 2 of 20 images: an unstratified split leaves it out of validation for most seeds (issue #12)."""
    stems = [f"img{i:02d}" for i in range(20)]
    present = {stem: {0, 1} for stem in stems}
    present["img03"], present["img17"] = {0, 1, 2}, {0, 2}
    missed_before = 0
    for seed in range(20):
        plain = splits.split_stems(stems, 0.2, seed)
        missed_before += not any(2 in present[s] for s in plain.val)
        split = splits.split_stems(stems, 0.2, seed, classes_of=present.get)
        assert any(2 in present[s] for s in split.val) and any(2 in present[s] for s in split.train)
        assert sorted(split.train + split.val) == stems and len(split.val) == len(plain.val)
        assert split == splits.split_stems(stems, 0.2, seed, classes_of=present.get)  # still fixed by the seed
    assert missed_before >= 10


def test_a_class_in_one_image_only_stays_in_training():
    stems = [f"img{i}" for i in range(5)]
    present = {stem: {0, 1} for stem in stems}
    present["img2"] = {0, 1, 2}
    for seed in range(10):
        split = splits.split_stems(stems, 0.4, seed, classes_of=present.get)
        assert sorted(split.train + split.val) == stems
