"""Fitting and cross-validating the calibrated measurement rules (colour detector, asymmetry score).

Small models fitted with numpy and scipy only (no scikit-learn: an L2-penalised logistic regression and a
proportional-odds model are a few lines each on top of ``scipy.optimize.minimize``, and the whole protocol
stays visible in one place):

- :func:`fit_logistic`: logistic regression on standardised features, L2 penalty ``lam`` on the weights
  (not the bias), optionally with *balanced* case weights (positives and negatives weigh half each, so
  that the decision ``probability >= 0.5`` aims at the best balanced accuracy rather than at the
  commoner answer);
- :func:`fit_ordinal`: proportional-odds (ordinal logistic) regression for a 0/1/.../K-1 score:
  ``P(y <= j) = sigmoid(c_j - w.x)`` with increasing cut-points ``c_j``;
- :func:`stratified_folds` and :func:`choose_penalty`: the penalty is chosen by k-fold cross-validation
  on the cases it is given (inside the outer training folds when the figures are to be reported);
- :func:`repeated_cv`: repeated stratified k-fold cross-validation that calls a ``fit`` function on
  each training fold only and collects the out-of-fold predictions.

``benchmarks/calibrate_colours.py`` uses them to choose the rules on the 80 annotated PH2 cases and to
report their cross-validated figures; :mod:`.calibrated` applies the fitted rules in ``measure()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize


@dataclass
class LinearFit:
    """A fitted linear model on standardised features: ``score = ((x - mean) / scale) . weights``.

    ``bias`` holds one intercept (logistic) or the increasing cut-points (ordinal, one fewer than classes).
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    lam: float

    def linear(self, X: np.ndarray) -> np.ndarray:
        """``((X - mean) / scale) . weights`` for each row of ``X``."""
        return ((np.asarray(X, float) - self.mean) / self.scale) @ self.weights


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X, float)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    return (X - mean) / scale, mean, scale


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Case weights giving each class half the total weight (all 1 when only one class is present)."""
    y = np.asarray(y, bool)
    pos = y.mean()
    if pos in (0.0, 1.0):
        return np.ones(len(y))
    return np.where(y, 0.5 / pos, 0.5 / (1.0 - pos))


def fit_logistic(X: np.ndarray, y: np.ndarray, lam: float, balanced: bool = True) -> LinearFit:
    """L2-penalised logistic regression of ``y`` (0/1) on the standardised columns of ``X``.

    Minimises ``mean_i w_i * logloss_i + lam / 2 * |weights|^2`` (``w_i`` balanced or 1) with L-BFGS and
    the exact gradient. Returns the fit; :func:`logistic_logit` gives the log-odds of new cases.
    """
    Z, mean, scale = _standardise(X)
    y = np.asarray(y, float)
    w = balanced_weights(y) if balanced else np.ones(len(y))
    n, d = Z.shape

    def loss(theta):
        z = Z @ theta[1:] + theta[0]
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
        value = np.sum(w * (np.logaddexp(0.0, z) - y * z)) / n + 0.5 * lam * np.sum(theta[1:] ** 2)
        r = w * (p - y) / n
        return value, np.concatenate([[r.sum()], Z.T @ r + lam * theta[1:]])

    theta = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B").x
    return LinearFit(mean, scale, theta[1:], np.array([theta[0]]), float(lam))


def logistic_logit(fit: LinearFit, X: np.ndarray) -> np.ndarray:
    """Log-odds of the fitted logistic model for each row of ``X``."""
    return fit.linear(X) + fit.bias[0]


def fit_ordinal(X: np.ndarray, y: np.ndarray, lam: float, n_classes: int = 3) -> LinearFit:
    """Proportional-odds regression of an ordinal score ``y`` in 0..n_classes-1 on the standardised ``X``.

    ``P(y <= j) = sigmoid(c_j - s)``, ``s = x . weights``; the cut-points are kept increasing by fitting
    ``c_0`` and the logarithms of the gaps. Minimises the mean negative log-likelihood plus
    ``lam / 2 * |weights|^2``.
    """
    Z, mean, scale = _standardise(X)
    y = np.asarray(y, int)
    d = Z.shape[1]
    k = n_classes - 1

    def cuts(t):
        return np.cumsum(np.concatenate([[t[0]], np.exp(t[1:k])]))

    def loss(theta):
        c = cuts(theta[:k])
        s = Z @ theta[k:]
        upper = np.concatenate([c, [np.inf]])[y] - s
        lower = np.concatenate([[-np.inf], c])[y] - s
        p = np.clip(_sigmoid(upper) - _sigmoid(lower), 1e-12, None)
        return -np.mean(np.log(p)) + 0.5 * lam * np.sum(theta[k:] ** 2)

    counts = np.bincount(y, minlength=n_classes) + 0.5
    cum = np.cumsum(counts)[:-1] / counts.sum()
    start_cuts = np.log(cum / (1 - cum))
    start = np.concatenate([[start_cuts[0]], np.log(np.maximum(np.diff(start_cuts), 1e-3)), np.zeros(d)])
    theta = minimize(loss, start, method="L-BFGS-B").x
    return LinearFit(mean, scale, theta[k:], cuts(theta[:k]), float(lam))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def ordinal_probabilities(fit: LinearFit, X: np.ndarray) -> np.ndarray:
    """``(n, n_classes)`` class probabilities of the fitted proportional-odds model."""
    s = fit.linear(X)[:, None]
    cum = _sigmoid(fit.bias[None, :] - s)
    cum = np.concatenate([np.zeros((len(s), 1)), cum, np.ones((len(s), 1))], axis=1)
    return np.diff(cum, axis=1)


def stratified_folds(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number (0..k-1) of each case, each class spread evenly over the folds in random order."""
    y = np.asarray(y)
    folds = np.empty(len(y), int)
    offset = 0
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        folds[idx] = (np.arange(len(idx)) + offset) % k
        offset = (offset + len(idx)) % k    # the next class starts where this one stopped: folds stay even
    return folds


def choose_penalty(X: np.ndarray, y: np.ndarray, penalties: Sequence[float],
                   fit: Callable[[np.ndarray, np.ndarray, float], LinearFit],
                   loss: Callable[[LinearFit, np.ndarray, np.ndarray], np.ndarray],
                   k: int, rng: np.random.Generator) -> float:
    """The penalty of ``penalties`` with the lowest k-fold cross-validated loss on ``(X, y)``.

    ``loss(fit, X_test, y_test)`` returns per-case losses; they are summed over the held-out cases of
    every fold (ties: the larger penalty, the simpler model).
    """
    folds = stratified_folds(y, k, rng)
    best = None
    for lam in sorted(penalties, reverse=True):
        total = 0.0
        for j in range(k):
            train, test = folds != j, folds == j
            total += float(np.sum(loss(fit(X[train], y[train], lam), X[test], y[test])))
        if best is None or total < best[0] - 1e-9:
            best = (total, lam)
    return best[1]


def balanced_log_loss(fit: LinearFit, X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-case logistic log loss times the case's weight."""
    z = logistic_logit(fit, X)
    return weights * (np.logaddexp(0.0, z) - np.asarray(y, float) * z)


def ordinal_log_loss(fit: LinearFit, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-case negative log-likelihood of the ordinal model."""
    p = ordinal_probabilities(fit, X)[np.arange(len(y)), np.asarray(y, int)]
    return -np.log(np.clip(p, 1e-12, None))


def repeated_cv(y: np.ndarray, predict: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray],
                repeats: int = 10, k: int = 5, seed: int = 0, strata: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold predictions of repeated stratified k-fold cross-validation.

    For each repeat ``r`` (random generator seeded ``seed + r``) the cases are split into ``k`` folds
    stratified by ``strata`` (default ``y``); ``predict(train_index, test_index, rng)`` must choose and fit
    everything on the training cases only and return one prediction per test case. Returns an array
    ``(repeats, n)`` (the dtype of the predictions).
    """
    y = np.asarray(y)
    strata = y if strata is None else np.asarray(strata)
    out = None
    for r in range(repeats):
        rng = np.random.default_rng(seed + r)
        folds = stratified_folds(strata, k, rng)
        for j in range(k):
            train, test = np.flatnonzero(folds != j), np.flatnonzero(folds == j)
            pred = np.asarray(predict(train, test, rng))
            if out is None:
                out = np.zeros((repeats, len(y)), dtype=pred.dtype)
            out[r, test] = pred
    return out


def binary_figures(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Sensitivity, specificity, balanced accuracy and accuracy of boolean predictions (NaN where undefined)."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    sens = float(pred[truth].mean()) if truth.any() else float("nan")
    spec = float((~pred[~truth]).mean()) if (~truth).any() else float("nan")
    return {"sensitivity": sens, "specificity": spec, "balanced_accuracy": float(np.nanmean([sens, spec])),
            "accuracy": float((pred == truth).mean())}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (NaN when either side is constant)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)
