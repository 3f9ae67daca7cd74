"""Metrics against hand-computed cases and independent float64 definitions.

ast-min scores with scikit-learn (as the original repository does); these tests rebuild each metric
from its definition instead: AUC as the Mann-Whitney pair count, AP as the mean of the precision at
each positive's rank, d' through `math.erf`. With distinct scores both definitions are exact, so the
tolerance only covers float64 rounding (1e-12).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ast_min.metrics import accuracy, compute_metrics, confusion_matrix, d_prime, mean_auc, mean_average_precision


def auc_by_pairs(scores, positive):
    """P(score of a random positive > score of a random negative), ties counting half."""
    pos, neg = scores[positive], scores[~positive]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (pos.size * neg.size)


def ap_by_ranks(scores, positive):
    """Mean over positives of the precision among the clips scored at least as high (distinct scores)."""
    order = np.argsort(-scores)
    hits = positive[order]
    precision_at = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return precision_at[hits].mean()


def test_hand_computed_case():
    # Class 0: positives ranked 1st and 3rd of 4 -> AP = (1/1 + 2/3) / 2 = 5/6; AUC: pairs (pos > neg):
    # 0.9 beats both negatives, 0.5 beats 0.1 only -> 3/4.
    # Class 1: scores 0.2 (neg), 0.1 (pos), 0.6 (neg), 0.9 (pos): positives ranked 1st and 4th of 4
    # -> AP = (1/1 + 2/4) / 2 = 3/4; AUC: 0.9 beats both negatives, 0.1 beats none -> 2/4.
    scores = np.array([[0.9, 0.2], [0.7, 0.1], [0.5, 0.6], [0.1, 0.9]])
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    assert mean_average_precision(scores, targets) == pytest.approx((5 / 6 + 3 / 4) / 2)
    assert mean_auc(scores, targets) == pytest.approx((3 / 4 + 1 / 2) / 2)
    # argmax per row: 0, 0, 1, 1; true: 0, 1, 0, 1 -> 2 of 4
    assert accuracy(scores, targets) == pytest.approx(0.5)
    assert confusion_matrix(scores, targets).tolist() == [[1, 1], [1, 1]]


def test_d_prime_known_values():
    assert d_prime(0.5) == 0.0
    # AUC = Phi(d' / sqrt 2) for two unit Gaussians d' apart; Phi(1) = 0.8413447460685429 (tables)
    assert d_prime(0.8413447460685429) == pytest.approx(math.sqrt(2), abs=1e-9)
    assert d_prime(1.0) == math.inf
    with pytest.raises(ValueError, match="AUC"):
        d_prime(1.5)


@settings(max_examples=30)
@given(st.integers(1, 4), st.integers(0, 2**32 - 1), st.floats(0.0, 3.0))
def test_metrics_equal_their_definitions(num_classes, seed, separation):
    rng = np.random.default_rng(seed)
    n = 40
    positive = rng.random((n, num_classes)) < 0.4
    positive[0], positive[1] = True, False  # every class has a positive and a negative
    scores = rng.standard_normal((n, num_classes)) + separation * positive  # continuous: distinct a.s.
    got = compute_metrics(torch.from_numpy(scores), positive.astype(np.float32))
    auc = np.mean([auc_by_pairs(scores[:, c], positive[:, c]) for c in range(num_classes)])
    ap = np.mean([ap_by_ranks(scores[:, c], positive[:, c]) for c in range(num_classes)])
    assert got["mAUC"] == pytest.approx(auc, abs=1e-12)
    assert got["mAP"] == pytest.approx(ap, abs=1e-12)
    if auc == 1.0:  # a perfect ranking: the two Gaussians are infinitely far apart
        assert got["d_prime"] == math.inf
    else:
        d = math.sqrt(2) * _probit(auc)
        assert got["d_prime"] == pytest.approx(d, abs=1e-6)  # bisection below is good to ~1e-12 in z
    assert got["accuracy"] == pytest.approx(np.mean(scores.argmax(1) == positive.argmax(1)))


def _probit(p):
    """Phi^-1 by bisection on Phi(z) = (1 + erf(z / sqrt 2)) / 2: independent of scipy."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@settings(max_examples=20)
@given(arrays(np.int64, st.integers(1, 60), elements=st.integers(0, 4)), st.integers(0, 2**32 - 1))
def test_confusion_matrix_counts(true, seed):
    predicted = np.random.default_rng(seed).integers(0, 5, true.size)
    scores, targets = np.eye(5)[predicted], np.eye(5)[true]
    matrix = confusion_matrix(scores, targets)
    assert matrix.sum() == true.size
    for t, p in zip(true, predicted):
        assert matrix[t, p] >= 1
    assert np.trace(matrix) == np.sum(true == predicted)


def test_classes_without_positives_are_skipped_with_a_warning():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    with pytest.warns(UserWarning, match="1 of 3 classes") as caught:
        assert mean_auc(scores, targets) == pytest.approx(1.0)
    assert caught[0].filename == __file__  # the warning names the caller's line, not one inside metrics.py
    with pytest.warns(UserWarning, match="1 of 3 classes") as caught:  # once, though AP and AUC both skip it
        compute_metrics(scores, targets)
    assert len(caught) == 1 and caught[0].filename == __file__


@pytest.mark.parametrize(
    "scores, targets, message",
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), "same"),
        (np.zeros(3), np.zeros(3), "2-D"),
        (np.full((2, 2), np.nan), np.eye(2), "NaN"),
        (np.zeros((0, 2)), np.zeros((0, 2)), "empty"),
        (np.zeros((2, 2)), np.ones((2, 2)), "both positive and negative"),
    ],
)
def test_bad_input(scores, targets, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(scores, targets)
