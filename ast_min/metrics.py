"""Evaluation metrics of the AST paper: accuracy, mAP, mean AUC and d-prime.

The original repository (src/utilities/stats.py) scores each class with scikit-learn and averages:
average precision (the area under the precision-recall curve, `average_precision_score`) and the
area under the ROC curve (`roc_auc_score`); d-prime is `sqrt(2) * Phi^-1(AUC)`, the separation in
standard deviations of two unit-variance Gaussians whose ROC has that area (Phi^-1 is the normal
quantile function, `scipy.stats.norm.ppf`). ast-min calls the same well-kept libraries.

Shape legend: B clips, C classes. `scores` are the model's per-class scores (logits,
probabilities, anything monotone in them: AP and AUC depend only on the ranking), `targets` are
0/1 labels or, after mixup, soft labels (>= 0.5 counts as positive).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (clips, classes), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or Inf values; check the model output (fp16 overflow?)")
    return x


def _check(scores, targets) -> tuple[np.ndarray, np.ndarray]:
    scores, targets = _as_numpy(scores, "scores"), _as_numpy(targets, "targets")
    if scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must have the same (clips, classes) shape")
    if scores.shape[0] == 0:
        raise ValueError("no clips to score: the evaluation set is empty")
    return scores, targets >= 0.5


def accuracy(scores, targets) -> float:
    """Fraction of clips whose top-scoring class is their (first) true class: (B, C), (B, C) -> float."""
    return _accuracy(*_check(scores, targets))


def _accuracy(scores: np.ndarray, positive: np.ndarray) -> float:
    return float(np.mean(scores.argmax(axis=1) == positive.argmax(axis=1)))


def _per_class(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average precision and ROC AUC of each class that has both positives and negatives (both are
    undefined otherwise), in one pass so that the warning about skipped classes comes once."""
    scored = [c for c in range(scores.shape[1]) if 0 < positive[:, c].sum() < positive.shape[0]]
    if not scored:
        raise ValueError("no class has both positive and negative clips: AP and AUC are undefined; evaluate on more clips")
    if len(scored) < scores.shape[1]:
        warnings.warn(
            f"{scores.shape[1] - len(scored)} of {scores.shape[1]} classes have no positive (or no negative) "
            "clip in the evaluation set; mAP and AUC average over the other classes",
            stacklevel=3,  # the line that called compute_metrics, mean_auc or mean_average_precision
        )
    ap = np.array([average_precision_score(positive[:, c], scores[:, c]) for c in scored])
    auc = np.array([roc_auc_score(positive[:, c], scores[:, c]) for c in scored])
    return ap, auc


def mean_average_precision(scores, targets) -> float:
    """mAP: the mean over classes of scikit-learn's average precision. (B, C), (B, C) -> float."""
    return float(np.mean(_per_class(*_check(scores, targets))[0]))


def mean_auc(scores, targets) -> float:
    """The mean over classes of the ROC AUC (scikit-learn's `roc_auc_score`). (B, C), (B, C) -> float."""
    return float(np.mean(_per_class(*_check(scores, targets))[1]))


def d_prime(auc: float) -> float:
    """d' = sqrt(2) * Phi^-1(AUC): 0 at chance (AUC 0.5), +inf at a perfect ranking (AUC 1)."""
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"an AUC lies in [0, 1], got {auc}")
    return float(math.sqrt(2.0) * norm.ppf(auc))


def compute_metrics(scores: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Every metric at once: {"accuracy", "mAP", "mAUC", "d_prime"} from (B, C) scores and targets."""
    scores, positive = _check(scores, targets)
    ap, auc = _per_class(scores, positive)
    auc_mean = float(np.mean(auc))
    return {"accuracy": _accuracy(scores, positive), "mAP": float(np.mean(ap)), "mAUC": auc_mean, "d_prime": d_prime(auc_mean)}


def confusion_matrix(scores, targets) -> np.ndarray:
    """Counts (C, C): row = true class, column = predicted (top-scoring) class."""
    scores, positive = _check(scores, targets)
    num_classes = scores.shape[1]
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (positive.argmax(axis=1), scores.argmax(axis=1)), 1)
    return matrix

