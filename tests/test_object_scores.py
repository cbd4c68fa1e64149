"""Object-level scores (`unet.object_scores`): hand-made label images whose tp/fp/fn, precision, recall, F1, AP
(tp / (tp + fp + fn)) and panoptic quality are worked out by hand in the comments, then checked."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from unet.object_scores import THRESHOLDS, ImageMatch, ObjectScores, iou_matrix, match_at, summary_sentence


def _square(labels: np.ndarray, top: int, left: int, label: int, height: int = 10, width: int = 10) -> None:
    labels[top : top + height, left : left + width] = label


def _greedy(iou: np.ndarray, threshold: float) -> int:
    """Matches made by taking pairs in order of decreasing IoU, each object at most once (what a solver avoids)."""
    used_t, used_p, tp = set(), set(), 0
    pairs = sorted(zip(*np.nonzero(iou >= threshold), strict=True), key=lambda rc: -iou[rc])
    for r, c in pairs:
        if r not in used_t and c not in used_p:
            used_t.add(r)
            used_p.add(c)
            tp += 1
    return tp


def _brute_force(iou: np.ndarray, threshold: float) -> tuple[int, float]:
    """The best (matches, total IoU) over every one-to-one assignment of a small matrix."""
    n_true, n_pred = iou.shape
    best = (0, 0.0)
    for cols in itertools.permutations(list(range(n_pred)) + [None] * n_true, n_true):
        pairs = [(r, c) for r, c in enumerate(cols) if c is not None and iou[r, c] >= threshold]
        score = (len(pairs), sum(iou[r, c] for r, c in pairs))
        if score[0] > best[0] or (score[0] == best[0] and score[1] > best[1] + 1e-12):
            best = score
    return best


def test_thresholds_are_the_ten_coco_style_iou_levels():
    assert THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_two_touching_squares_merged_into_one_match_once_at_0_5_and_never_above():
    truth = np.zeros((12, 22), np.int32)
    _square(truth, 1, 1, 1)
    _square(truth, 1, 11, 2)
    predicted = (truth > 0).astype(np.int32)  # one 10x20 object covering both squares
    iou, true_ids, pred_ids = iou_matrix(truth, predicted)
    # each square: overlap 100, union 100 + 200 - 100 = 200 -> IoU 0.5 exactly, and 0.5 counts (IoU >= threshold)
    assert iou.tolist() == [[0.5], [0.5]] and true_ids.tolist() == [1, 2] and pred_ids.tolist() == [1]
    m = match_at(iou, 0.5)
    # one to one: the merged object matches one square; the other square is missed
    assert (m.tp, m.fp, m.fn, m.matched_iou_sum) == (1, 0, 1, 0.5)
    assert m.precision == 1.0  # 1 / (1 + 0)
    assert m.recall == 0.5  # 1 / (1 + 1)
    assert m.f1 == pytest.approx(2 / 3)  # 2*1 / (2*1 + 0 + 1)
    assert m.average_precision == 0.5  # 1 / (1 + 0 + 1)
    assert m.panoptic_quality == pytest.approx(1 / 3)  # 0.5 / (1 + 0/2 + 1/2)
    assert m.mean_matched_iou == 0.5
    above = match_at(iou, 0.55)  # 0.5 < 0.55: nothing matches; 1 fp, 2 fn
    assert (above.tp, above.fp, above.fn) == (0, 1, 2)
    assert (above.precision, above.recall, above.f1, above.average_precision, above.panoptic_quality) == (0, 0, 0, 0, 0)
    assert above.mean_matched_iou is None  # no match to average


def test_a_split_rectangle_matches_one_half_and_the_other_half_is_a_false_positive():
    truth = np.zeros((12, 22), np.int32)
    _square(truth, 1, 1, 5, width=20)  # one 10x20 rectangle, id 5
    predicted = np.zeros_like(truth)
    _square(predicted, 1, 1, 1)
    _square(predicted, 1, 11, 2)
    iou, _, _ = iou_matrix(truth, predicted)
    assert iou.tolist() == [[0.5, 0.5]]  # each half: 100 / (200 + 100 - 100)
    m = match_at(iou, 0.5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)  # at most one match per true object
    assert m.precision == 0.5  # 1 / (1 + 1)
    assert m.recall == 1.0  # 1 / (1 + 0)
    assert m.f1 == pytest.approx(2 / 3)  # 2 / (2 + 1 + 0)
    assert m.average_precision == 0.5  # 1 / (1 + 1 + 0)
    assert m.panoptic_quality == pytest.approx(1 / 3)  # 0.5 / (1 + 1/2 + 0)


def test_a_perfect_prediction_with_other_ids_scores_one_at_every_threshold():
    truth = np.zeros((20, 40), np.int32)
    _square(truth, 2, 2, 3)
    _square(truth, 5, 20, 9)
    predicted = np.zeros_like(truth)
    _square(predicted, 2, 2, 2)  # the ids are swapped and renumbered: 3 -> 2, 9 -> 1
    _square(predicted, 5, 20, 1)
    iou, true_ids, pred_ids = iou_matrix(truth, predicted)
    assert true_ids.tolist() == [3, 9] and pred_ids.tolist() == [1, 2]
    assert iou.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    scores = ObjectScores()
    scores.add(truth, predicted, "perfect")
    d = scores.to_dict()
    for row in d["pooled"]:
        assert (row["tp"], row["fp"], row["fn"]) == (2, 0, 0)
        assert row["average_precision"] == row["panoptic_quality"] == row["mean_matched_iou"] == 1.0
        assert row["precision"] == row["recall"] == row["f1"] == 1.0
    assert d["ap50"] == d["f1_50"] == d["mean_ap"] == 1.0
    assert d["per_image"] == [{"image": "perfect", "true_objects": 2, "predicted_objects": 2, "tp50": 2, "fp50": 0,
                               "fn50": 0, "ap50": 1.0, "f1_50": 1.0}]


def test_a_square_shifted_by_two_pixels_matches_up_to_iou_0_65():
    truth = np.zeros((20, 20), np.int32)
    predicted = np.zeros_like(truth)
    _square(truth, 5, 5, 1)
    _square(predicted, 5, 7, 1)
    iou, _, _ = iou_matrix(truth, predicted)
    # overlap 10 x 8 = 80, union 100 + 100 - 80 = 120 -> IoU 2/3 = 0.6667
    assert iou[0, 0] == pytest.approx(80 / 120)
    scores = ObjectScores()
    scores.add(truth, predicted)
    d = scores.to_dict()
    # matched (AP 1) at 0.5, 0.55, 0.6, 0.65; at 0.7 and above 1 fp + 1 fn, AP 0
    assert [row["average_precision"] for row in d["pooled"]] == [1.0] * 4 + [0.0] * 6
    assert d["mean_ap"] == 0.4  # (4 * 1 + 6 * 0) / 10
    assert d["pooled"][0]["panoptic_quality"] == d["pooled"][0]["mean_matched_iou"] == 0.6667  # (2/3) / 1
    assert d["pooled"][4]["mean_matched_iou"] is None and d["pooled"][4]["panoptic_quality"] == 0.0
    assert d["per_image"][0]["image"] == "image 1"  # an unnamed image gets its number


def test_empty_images_are_undefined_and_pool_as_if_absent():
    empty = np.zeros((16, 16), np.int32)
    iou, true_ids, pred_ids = iou_matrix(empty, empty)
    assert iou.shape == (0, 0) and true_ids.size == pred_ids.size == 0
    m = match_at(iou, 0.5)
    assert (m.tp, m.fp, m.fn) == (0, 0, 0)
    assert m.precision is m.recall is m.f1 is m.average_precision is m.mean_matched_iou is m.panoptic_quality is None

    only_empty = ObjectScores()
    only_empty.add(empty, empty)
    d = only_empty.to_dict()
    assert d["ap50"] is None and d["f1_50"] is None and d["mean_ap"] is None
    assert all(v is None for row in d["per_image_mean"] for k, v in row.items() if k != "threshold")
    assert summary_sentence(d) == "No objects to score: neither the truth nor the prediction has any in 1 image."

    perfect = np.zeros((16, 16), np.int32)
    _square(perfect, 3, 3, 4)
    both = ObjectScores()
    both.add(empty, empty, "empty")
    both.add(perfect, perfect, "perfect")
    d = both.to_dict()
    # the empty image adds no counts and has no defined figure, so both summaries are the perfect image's
    for pooled, mean in zip(d["pooled"], d["per_image_mean"], strict=True):
        assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (1, 0, 0)
        assert mean == {"threshold": pooled["threshold"], "precision": 1.0, "recall": 1.0, "f1": 1.0,
                        "average_precision": 1.0, "panoptic_quality": 1.0}
    assert d["per_image"][0]["ap50"] is None and d["per_image"][0]["f1_50"] is None


def test_an_empty_prediction_has_no_precision_but_zero_recall_f1_and_ap():
    truth = np.zeros((16, 30), np.int32)
    _square(truth, 2, 2, 1)
    _square(truth, 2, 15, 2)
    m = match_at(iou_matrix(truth, np.zeros_like(truth))[0], 0.5)
    assert (m.tp, m.fp, m.fn) == (0, 0, 2)
    assert m.precision is None  # 0 / (0 + 0)
    assert (m.recall, m.f1, m.average_precision, m.panoptic_quality) == (0, 0, 0, 0)  # 0 / 2, 0 / 2, 0 / 2, 0 / 1


def _two_images() -> ObjectScores:
    """Image A: 4 true squares, 3 found exactly, 1 missed. Image B: 1 true square found shifted by 2 px (IoU 2/3)
    plus 1 extra object."""
    a_truth = np.zeros((30, 60), np.int32)
    for k in range(4):
        _square(a_truth, 5, 2 + 14 * k, 10 + k)
    a_pred = np.where(a_truth == 13, 0, a_truth)  # the fourth square is missed
    b_truth = np.zeros((30, 60), np.int32)
    b_pred = np.zeros_like(b_truth)
    _square(b_truth, 5, 5, 1)
    _square(b_pred, 5, 7, 1)  # IoU 80 / 120 = 2/3
    _square(b_pred, 18, 40, 2)  # touches no true object
    scores = ObjectScores()
    scores.add(a_truth, a_pred, "A")
    scores.add(b_truth, b_pred, "B")
    return scores


def test_pooled_and_per_image_mean_average_different_things():
    d = _two_images().to_dict()
    assert (d["images"], d["true_objects"], d["predicted_objects"]) == (2, 5, 5)
    at50, at70 = d["pooled"][0], d["pooled"][4]
    # IoU 0.5: A tp 3 fp 0 fn 1, matched IoU 3; B tp 1 fp 1 fn 0, matched IoU 2/3
    # pooled: tp 4 fp 1 fn 1 -> precision 4/5, recall 4/5, F1 8/10, AP 4/6, PQ (3 + 2/3) / (4 + 0.5 + 0.5) = 11/15
    assert (at50["tp"], at50["fp"], at50["fn"]) == (4, 1, 1)
    assert (at50["precision"], at50["recall"], at50["f1"]) == (0.8, 0.8, 0.8)
    assert at50["average_precision"] == 0.6667  # 4/6
    assert at50["panoptic_quality"] == 0.7333  # 11/15
    assert at50["mean_matched_iou"] == 0.9167  # (11/3) / 4 = 11/12
    # per image at 0.5: A precision 1, recall 3/4, F1 6/7, AP 3/4, PQ 3 / 3.5 = 6/7
    #                   B precision 1/2, recall 1, F1 2/3, AP 1/2, PQ (2/3) / 1.5 = 4/9
    mean50 = d["per_image_mean"][0]
    assert mean50["precision"] == 0.75  # (1 + 1/2) / 2
    assert mean50["recall"] == 0.875  # (3/4 + 1) / 2
    assert mean50["f1"] == 0.7619  # (6/7 + 2/3) / 2 = 32/42
    assert mean50["average_precision"] == 0.625  # (3/4 + 1/2) / 2
    assert mean50["panoptic_quality"] == 0.6508  # (6/7 + 4/9) / 2 = 82/126
    # IoU 0.7: B's shifted square no longer matches: B tp 0 fp 2 fn 1; pooled tp 3 fp 2 fn 2
    assert (at70["tp"], at70["fp"], at70["fn"]) == (3, 2, 2)
    assert at70["average_precision"] == 0.4286  # 3/7
    assert (at70["precision"], at70["recall"], at70["f1"]) == (0.6, 0.6, 0.6)  # 3/5, 3/5, 6/10
    assert d["per_image_mean"][4]["average_precision"] == 0.375  # (3/4 + 0) / 2
    assert (d["ap50"], d["f1_50"]) == (0.6667, 0.8)
    assert d["mean_ap"] == 0.5238  # (4 * 4/6 + 6 * 3/7) / 10 = 110/210
    assert d["per_image"] == [
        {"image": "A", "true_objects": 4, "predicted_objects": 3, "tp50": 3, "fp50": 0, "fn50": 1, "ap50": 0.75,
         "f1_50": 0.8571},
        {"image": "B", "true_objects": 1, "predicted_objects": 2, "tp50": 1, "fp50": 1, "fn50": 0, "ap50": 0.5,
         "f1_50": 0.6667},
    ]
    assert "pooled" in d["averaged"] and "per_image_mean" in d["averaged"] and "TP / (TP + FP + FN)" in d["averaged"]
    assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_summary_sentence_carries_the_numbers():
    sentence = summary_sentence(_two_images().to_dict())
    assert sentence == ("AP@0.5 0.67 (pooled over 2 images: 4 of 5 true objects found, 1 extra); F1@0.5 0.80; "
                        "mean AP over IoU 0.5-0.95 0.52")


def test_below_0_5_the_optimal_matching_finds_a_match_that_greedy_loses():
    # one 10-pixel-high strip; columns: truth A = [0, 10), B = [10, 14); prediction Y = [0, 4), X = [4, 14)
    truth = np.zeros((10, 14), np.int32)
    truth[:, :10], truth[:, 10:] = 1, 2
    predicted = np.zeros_like(truth)
    predicted[:, :4], predicted[:, 4:] = 1, 2
    iou, _, _ = iou_matrix(truth, predicted)
    # A-Y: 40 / 100 = 0.4; A-X: 60 / 140 = 0.4286; B-X: 40 / 100 = 0.4 (B inside X); B-Y: 0
    assert iou == pytest.approx(np.array([[0.4, 60 / 140], [0.0, 0.4]]))
    # greedy takes the best pair A-X first; then B's only partner X and Y's only partner A are used: 1 match
    assert _greedy(iou, 0.35) == 1
    m = match_at(iou, 0.35)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)  # A-Y and B-X
    assert m.matched_iou_sum == pytest.approx(0.8)


def test_at_0_5_and_above_the_matching_stays_one_to_one():
    # Two objects of a partition can both reach IoU 0.5 with a third only as an exact, equal-sized merge or split
    # (see the module docstring); several such stars in one image still give one match each.
    truth = np.zeros((12, 90), np.int32)
    predicted = np.zeros_like(truth)
    for k in range(3):  # three merges: two true squares, one predicted 10x20 object
        _square(truth, 1, 1 + 30 * k, 1 + 2 * k)
        _square(truth, 1, 11 + 30 * k, 2 + 2 * k)
        _square(predicted, 1, 1 + 30 * k, 1 + k, width=20)
    iou, _, _ = iou_matrix(truth, predicted)
    assert int((iou >= 0.5).sum()) == 6  # six candidate pairs (what counting pairs would call 6 matches)
    m = match_at(iou, 0.5)
    assert (m.tp, m.fp, m.fn) == (3, 0, 3)
    assert m.tp <= min(iou.shape)


@pytest.mark.parametrize("seed", range(6))
def test_the_matching_is_the_best_one_to_one_assignment(seed: int):
    rng = np.random.default_rng(seed)
    iou = rng.random((4, 4)) * (rng.random((4, 4)) < 0.6)  # dense conflicts, any threshold
    for threshold in (0.2, 0.4, 0.5, 0.7):
        m = match_at(iou, threshold)
        best_count, best_sum = _brute_force(iou, threshold)
        assert m.tp == best_count and m.matched_iou_sum == pytest.approx(best_sum)
        assert m.fp == 4 - m.tp and m.fn == 4 - m.tp


def test_a_thousand_pixel_image_with_two_thousand_objects():
    # 40 x 50 cells of 25 x 20 pixels; each holds a 23 x 18 object; the prediction moves each 1 px to the right,
    # drops every 20th object (100 missed) and adds a 1-pixel object in 50 of the dropped cells
    truth = np.zeros((1000, 1000), np.int32)
    predicted = np.zeros_like(truth)
    rng = np.random.default_rng(0)
    new_ids = rng.permutation(5000) + 1
    for k in range(2000):
        r, c = divmod(k, 50)
        truth[r * 25 + 1 : r * 25 + 24, c * 20 + 1 : c * 20 + 19] = 7 * k + 3
        if k % 20:
            predicted[r * 25 + 1 : r * 25 + 24, c * 20 + 2 : c * 20 + 20] = new_ids[k]
        elif k < 1000:
            predicted[r * 25 + 24, c * 20] = new_ids[k]
    iou, true_ids, pred_ids = iou_matrix(truth, predicted)
    assert iou.shape == (2000, 1950) and len(true_ids) == 2000 and len(pred_ids) == 1950
    # each kept object: overlap 23 x 17 = 391, union 414 + 414 - 391 = 437 -> IoU 0.8947
    assert np.sort(iou.max(axis=0))[-1900:] == pytest.approx(391 / 437)
    scores = ObjectScores()
    scores.add(truth, predicted, "big")
    d = scores.to_dict()
    assert [(row["tp"], row["fp"], row["fn"]) for row in d["pooled"]] == [(1900, 50, 100)] * 8 + [(0, 1950, 2000)] * 2
    assert d["ap50"] == 0.9268  # 1900 / (1900 + 50 + 100) = 1900 / 2050


def test_thresholds_outside_0_5_still_give_the_0_5_figures():
    scores = ObjectScores(thresholds=(0.75,))
    truth = np.zeros((20, 20), np.int32)
    predicted = np.zeros_like(truth)
    _square(truth, 5, 5, 1)
    _square(predicted, 5, 7, 1)  # IoU 2/3: matched at 0.5, not at 0.75
    scores.add(truth, predicted)
    d = scores.to_dict()
    assert d["thresholds"] == [0.75] and [row["tp"] for row in d["pooled"]] == [0]
    assert d["ap50"] == 1.0 and d["mean_ap"] == 0.0
    assert summary_sentence(d).endswith("mean AP over IoU 0.75 0.00")


def test_bad_input_is_refused_in_words():
    with pytest.raises(ValueError, match="shape"):
        iou_matrix(np.zeros((4, 4), np.int32), np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="integer"):
        iou_matrix(np.full((4, 4), 0.5), np.zeros((4, 4), np.int32))
    assert iou_matrix(np.ones((4, 4), np.float32), np.ones((4, 4), bool))[0].tolist() == [[1.0]]
    with pytest.raises(ValueError, match="threshold"):
        ObjectScores(thresholds=(0.0,))
    with pytest.raises(ValueError, match="threshold"):
        match_at(np.zeros((1, 1)), 1.5)


def test_image_matches_add_up():
    total = ImageMatch(3, 0, 1, 3.0) + ImageMatch(1, 1, 0, 0.5)
    assert total == ImageMatch(4, 1, 1, 3.5)
