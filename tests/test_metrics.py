"""Dice, IoU, pixel accuracy and the losses, checked against an independent NumPy computation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from unet.metrics import (
    LOSS_NAMES,
    DiceScore,
    IoUScore,
    PixelAccuracy,
    SegmentationLoss,
    confusion_counts,
    dice_from_counts,
    iou_from_counts,
    make_loss,
    pixel_accuracy,
    predicted_classes,
    segmentation_metrics,
)


def numpy_scores(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice and IoU straight from the definitions; a class in neither mask is not scored (NaN)."""
    dice, iou = [], []
    for k in range(num_classes):
        t, p = truth == k, pred == k
        inter, union, total = np.sum(t & p), np.sum(t | p), t.sum() + p.sum()
        dice.append(np.nan if total == 0 else 2 * inter / total)
        iou.append(np.nan if union == 0 else inter / union)
    return np.array(dice), np.array(iou)


def mask(*rows: str) -> np.ndarray:
    """A [1, H, W, 1] mask drawn as text: each character a class index."""
    return np.array([[int(c) for c in row] for row in rows], np.int32)[None, ..., None]


def as_binary_output(classes: np.ndarray) -> np.ndarray:
    """A sigmoid-like output that thresholds to `classes`."""
    return np.where(classes == 1, 0.9, 0.1).astype(np.float32)


def as_softmax_output(classes: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[classes[..., 0]] * 0.8 + 0.2 / num_classes


CASES = {
    "perfect": (mask("0110", "0110"), mask("0110", "0110")),
    "empty": (mask("0000", "0000"), mask("0000", "0000")),
    "disjoint": (mask("1100", "0000"), mask("0011", "0000")),
    "partial": (mask("1110", "0000"), mask("0111", "0000")),
    "missed": (mask("0100", "0000"), mask("0000", "0000")),
}


@pytest.mark.parametrize("case", CASES)
def test_binary_scores_match_numpy(case: str) -> None:
    truth, pred = CASES[case]
    counts = confusion_counts(truth, pred, 2)
    dice, iou = numpy_scores(truth, pred, 2)
    np.testing.assert_allclose(dice_from_counts(counts), dice)
    np.testing.assert_allclose(iou_from_counts(counts), iou)
    np.testing.assert_allclose(pixel_accuracy(counts), np.mean(truth == pred))


def test_known_values_of_the_named_cases() -> None:
    def foreground(case: str) -> tuple[float, float]:
        counts = confusion_counts(*CASES[case], 2)
        return float(dice_from_counts(counts)[1]), float(iou_from_counts(counts)[1])

    assert foreground("perfect") == (1.0, 1.0)
    assert all(np.isnan(foreground("empty")))  # nothing to find, nothing found: not scored
    assert foreground("disjoint") == (0.0, 0.0)
    assert foreground("partial") == pytest.approx((2 * 2 / 6, 2 / 4))
    assert foreground("missed") == (0.0, 0.0)


def test_confusion_counts_add_up_per_class() -> None:
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 4, (2, 16, 16, 1)), rng.integers(0, 4, (2, 16, 16, 1))
    counts = confusion_counts(truth, pred, 4).numpy()
    for k in range(4):
        t, p = truth == k, pred == k
        assert list(counts[k]) == [np.sum(t & p), np.sum(~t & p), np.sum(t & ~p), np.sum(~t & ~p)]


def test_multiclass_scores_match_numpy_including_an_absent_class() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, (3, 20, 20, 1))  # class 3 never appears in the truth...
    pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, 4, truth.shape))  # ...but is predicted
    counts = confusion_counts(truth, pred, 5)  # and class 4 appears nowhere
    dice, iou = numpy_scores(truth, pred, 5)
    np.testing.assert_allclose(dice_from_counts(counts), dice)
    np.testing.assert_allclose(iou_from_counts(counts), iou)
    assert dice[3] == 0.0 and np.isnan(dice[4])  # predicted but absent: wrong; absent from both: not scored


def test_predictions_become_classes_by_threshold_or_argmax() -> None:
    sigmoid = np.array([0.2, 0.5, 0.51, 0.9], np.float32).reshape(1, 1, 4, 1)
    assert predicted_classes(sigmoid, 2).numpy().ravel().tolist() == [0, 0, 1, 1]
    softmax = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], np.float32).reshape(1, 1, 2, 3)
    assert predicted_classes(softmax, 3).numpy().ravel().tolist() == [1, 0]


@pytest.mark.parametrize("num_classes", [2, 4])
def test_metrics_accumulate_counts_over_an_epoch_not_a_mean_of_batches(num_classes: int) -> None:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, num_classes, (6, 8, 8, 1))
    truth[:3] = 0  # batches without foreground make a per-batch mean differ from the epoch's value
    pred = np.where(rng.random(truth.shape) < 0.6, truth, rng.integers(0, num_classes, truth.shape))
    output = as_binary_output(pred) if num_classes == 2 else as_softmax_output(pred, num_classes)
    metrics = [DiceScore(num_classes), IoUScore(num_classes), PixelAccuracy(num_classes),
               DiceScore(num_classes, class_index=1, name="dice_1")]
    for start in range(0, 6, 2):
        for metric in metrics:
            metric.update_state(truth[start:start + 2], output[start:start + 2])
    dice, iou = numpy_scores(truth, pred, num_classes)
    assert float(metrics[0].result()) == pytest.approx(dice[1:].mean(), rel=1e-6)
    assert float(metrics[1].result()) == pytest.approx(iou[1:].mean(), rel=1e-6)
    assert float(metrics[2].result()) == pytest.approx(np.mean(truth == pred), rel=1e-6)
    assert float(metrics[3].result()) == pytest.approx(dice[1], rel=1e-6)
    metrics[0].reset_state()
    assert float(metrics[0].result()) == 1.0  # nothing seen: nothing missed


def test_the_epoch_headline_leaves_out_a_class_absent_from_truth_and_prediction() -> None:
    """One stray pixel of an absent class must not swing the headline from 1.0 to the middle (issue #12)."""
    truth = mask("0110", "0110", "0000")
    perfect = as_softmax_output(truth, 3)
    stray = truth.copy()
    stray[0, 2, 0, 0] = 2  # one pixel of class 2, which the truth never has
    headline = DiceScore(3)
    headline.update_state(truth, perfect)
    assert float(headline.result()) == 1.0  # class 2 absent from both: mean over class 1 only
    headline.reset_state()
    headline.update_state(truth, as_softmax_output(stray, 3))
    dice, _ = numpy_scores(truth, stray, 3)
    assert float(headline.result()) == pytest.approx(np.mean([dice[1], 0.0]), rel=1e-6)  # predicted-but-absent: 0


def test_metrics_serialise_through_get_config() -> None:
    metric = DiceScore(3, class_index=2, name="dice_2")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert (type(clone), clone.num_classes, clone.class_index, clone.name) == (DiceScore, 3, 2, "dice_2")
    loss = make_loss("focal", 3, [1.0, 2.0, 3.0])
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert (clone.kind, clone.num_classes, clone.class_weights) == ("focal", 3, [1.0, 2.0, 3.0])


def test_metric_names_match_the_history_contract() -> None:
    names = [metric.name for metric in segmentation_metrics(3)]
    assert names[:3] == ["dice", "iou", "pixel_accuracy"]
    assert {"dice_0", "dice_1", "dice_2", "iou_0", "iou_1", "iou_2"} <= set(names)


def toy_problem(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes by brightness band: learnable by one 1x1 convolution."""
    images = np.random.default_rng(3).random((4, 16, 16, 1), dtype=np.float32)
    return images, np.minimum((images * num_classes).astype(np.int32), num_classes - 1)


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_decreases_on_a_toy_problem(name: str, num_classes: int) -> None:
    images, masks = toy_problem(num_classes)
    keras.utils.set_random_seed(0)
    channels, activation = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(channels, 1, activation=activation)])
    loss, optimizer = make_loss(name, num_classes), keras.optimizers.Adam(0.2)
    values = []
    for _ in range(20):
        with tf.GradientTape() as tape:
            value = loss(masks, model(images))
        optimizer.apply(tape.gradient(value, model.trainable_variables), model.trainable_variables)
        values.append(float(value))
    assert values[-1] < 0.85 * values[0]


def test_dice_loss_is_zero_for_a_perfect_prediction_also_without_foreground() -> None:
    loss = make_loss("dice", 2)
    truth = mask("0110", "0110")
    assert float(loss(truth, truth.astype(np.float32))) == pytest.approx(0.0, abs=1e-5)
    empty = mask("0000", "0000")
    assert float(loss(empty, empty.astype(np.float32))) == pytest.approx(0.0, abs=1e-5)


def test_class_weights_make_a_class_count_more() -> None:
    truth = mask("0011", "0011")
    output = np.where(truth == 1, 0.3, 0.1).astype(np.float32)  # foreground poorly predicted
    plain = float(make_loss("ce", 2)(truth, output))
    weighted = float(make_loss("ce", 2, [1.0, 5.0])(truth, output))
    assert weighted > plain
    with pytest.raises(ValueError, match="2 class weights given for 3 classes"):
        make_loss("ce", 3, [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown loss"):
        SegmentationLoss("hinge")


def test_metrics_and_loss_compile_under_xla() -> None:
    """On one GPU Keras compiles the train step with XLA; the counts must support it."""
    images, masks = toy_problem(3)
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(3, 1, activation="softmax")])
    model.compile("adam", loss=make_loss("dice_ce", 3), metrics=segmentation_metrics(3, per_class=False),
                  jit_compile=True)
    logs = model.train_on_batch(images, masks, return_dict=True)
    assert {"loss", "dice", "iou", "pixel_accuracy"} <= set(logs)


def test_a_model_is_near_the_baseline_when_its_headline_does_not_beat_it_or_it_closes_little_of_the_gap() -> None:
    from unet.metrics import near_baseline, skill

    assert near_baseline(0.869, 0.876, skill(0.70, 0.44))  # ISBI Quick demo: cell below "all cell"
    assert not near_baseline(0.943, 0.876, skill(0.87, 0.44))  # ISBI Balanced
    assert near_baseline(0.10, 0.0, skill(0.54, 0.495))  # a rare foreground barely found
    assert not near_baseline(0.80, 0.0, skill(0.90, 0.495))
    assert skill(1.0, 0.44) == 1.0 and skill(0.44, 0.44) == 0.0
