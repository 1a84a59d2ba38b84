"""The fitting and cross-validation behind the calibrated rules, on simulated data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nevus_seg.measurements import calibration as cal


def _logistic_data(n, weights, bias, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n, len(weights)))
    p = 1 / (1 + np.exp(-(X @ np.asarray(weights) + bias)))
    return X, (rng.random(n) < p).astype(int)


def test_logistic_regression_recovers_known_weights():
    X, y = _logistic_data(4000, [2.0, -1.0, 0.0], 0.5, seed=0)
    fit = cal.fit_logistic(X, y, lam=1e-4, balanced=False)
    # standardised weights = true weights x feature SD (~1)
    assert fit.weights / fit.scale == pytest.approx([2.0, -1.0, 0.0], abs=0.15)
    z = cal.logistic_logit(fit, X)
    assert np.mean((z > 0) == (y == 1)) > 0.75


def test_balanced_weights_put_the_decision_between_the_classes():
    X, y = _logistic_data(3000, [1.5], -3.0, seed=1)        # about 8 % positives
    assert 0.03 < y.mean() < 0.15
    plain = cal.binary_figures(cal.logistic_logit(cal.fit_logistic(X, y, 1e-3, balanced=False), X) > 0, y)
    balanced = cal.binary_figures(cal.logistic_logit(cal.fit_logistic(X, y, 1e-3, balanced=True), X) > 0, y)
    assert plain["sensitivity"] < 0.3                         # the commoner answer wins without weights
    assert balanced["sensitivity"] > 0.6 and balanced["specificity"] > 0.6
    assert balanced["balanced_accuracy"] > plain["balanced_accuracy"] + 0.1


def test_ordinal_model_recovers_cut_points_and_weight():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (5000, 1))
    latent = 1.5 * x[:, 0] + rng.logistic(0, 1, 5000)
    y = (latent > -0.5).astype(int) + (latent > 1.5).astype(int)
    fit = cal.fit_ordinal(x, y, lam=1e-4)
    assert fit.weights[0] / fit.scale[0] == pytest.approx(1.5, abs=0.15)
    cuts = fit.bias + fit.weights[0] * fit.mean[0] / fit.scale[0]   # back to the unstandardised feature
    assert cuts == pytest.approx([-0.5, 1.5], abs=0.15)
    p = cal.ordinal_probabilities(fit, x)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    assert (p >= 0).all() and cal.spearman(p @ np.arange(3), y) > 0.5


def test_stratified_folds_spread_each_class_evenly():
    y = np.array([1] * 7 + [0] * 33 + [2] * 10)
    folds = cal.stratified_folds(y, 5, np.random.default_rng(0))
    for cls, n in ((0, 33), (1, 7), (2, 10)):
        counts = np.bincount(folds[y == cls], minlength=5)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1


def test_repeated_cv_predicts_each_case_from_folds_without_it():
    y = np.array([0, 1] * 20)
    seen = []

    def predict(train, test, rng):
        assert not set(train) & set(test) and len(train) + len(test) == len(y)
        seen.append(test)
        return np.full(len(test), 0.5)

    out = cal.repeated_cv(y, predict, repeats=3, k=5, seed=4)
    assert out.shape == (3, 40) and len(seen) == 15
    for r in range(3):   # every case is a test case exactly once per repeat
        assert sorted(np.concatenate(seen[5 * r:5 * r + 5]).tolist()) == list(range(40))


def test_cross_validation_tells_signal_from_noise():
    """Nested CV of the logistic detector: high balanced accuracy on a real signal, chance on noise."""
    X, y = _logistic_data(120, [3.0, 0.0, 0.0, 0.0], 0.0, seed=5)
    noise = np.random.default_rng(6).normal(0, 1, X.shape)

    def figures(features):
        def predict(train, test, rng):
            def loss(f, a, b):
                return cal.balanced_log_loss(f, a, b, cal.balanced_weights(b))
            lam = cal.choose_penalty(features[train], y[train], (0.01, 0.1, 1.0), cal.fit_logistic, loss, 5, rng)
            return cal.logistic_logit(cal.fit_logistic(features[train], y[train], lam), features[test]) > 0
        calls = cal.repeated_cv(y, predict, repeats=2)
        return np.mean([cal.binary_figures(c, y)["balanced_accuracy"] for c in calls])

    assert figures(X) > 0.8
    assert 0.3 < figures(noise) < 0.65


def test_figures_and_spearman():
    f = cal.binary_figures([1, 1, 0, 0, 1], [1, 0, 0, 0, 1])
    assert f == {"sensitivity": 1.0, "specificity": pytest.approx(2 / 3), "balanced_accuracy": pytest.approx(5 / 6),
                 "accuracy": 0.8}
    assert np.isnan(cal.binary_figures([0, 1], [0, 0])["sensitivity"])
    assert cal.spearman([1, 2, 3], [2, 4, 9]) == pytest.approx(1.0)
    assert np.isnan(cal.spearman([1, 1, 1], [1, 2, 3]))
