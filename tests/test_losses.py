"""Center loss (paper Eqs. 7-9) and softmax cross-entropy against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from amobilenet_jax import losses

# Three examples in 2-D, three classes; class 2 is absent from the batch.
X = np.array([[1.0, 2.0], [3.0, 0.0], [0.0, -1.0]], np.float32)
Y = np.array([0, 0, 1], np.int32)
C = np.array([[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]], np.float32)


def test_center_loss_matches_eq7_by_hand():
    # ||x0-c0||^2 = 0 + 1 = 1; ||x1-c0||^2 = 4 + 1 = 5; ||x2-c1||^2 = 0 + 1 = 1; L = (1+5+1) / (2*3)
    assert float(losses.center_loss(X, Y, C)) == pytest.approx(7.0 / 6.0)


def test_center_loss_gradient_is_eq8_and_never_reaches_centers():
    gx, gc = jax.grad(losses.center_loss, argnums=(0, 2))(jnp.asarray(X), jnp.asarray(Y), jnp.asarray(C))
    # dL/dx_i = (x_i - c_{y_i}) / m  (Eq. 8 for the batch mean)
    expected = (X - C[Y]) / 3.0
    np.testing.assert_allclose(gx, expected, rtol=1e-6)
    np.testing.assert_array_equal(gc, np.zeros_like(C))


def test_center_update_matches_eq9_by_hand():
    alpha = 0.5
    # class 0: n=2, sum(c0 - x_i) = (0,-1) + (-2,1) = (-2, 0); delta = (-2,0)/3
    # class 1: n=1, c1 - x2 = (0, 1); delta = (0,1)/2
    # class 2: n=0, delta = 0
    expected = C - alpha * np.array([[-2 / 3, 0.0], [0.0, 0.5], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(losses.center_update(C, X, Y, alpha), expected, rtol=1e-6)


def test_center_update_moves_centers_toward_class_means():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32) + 3.0
    y = np.zeros(64, np.int32)
    c = np.zeros((2, 4), np.float32)
    for _ in range(50):
        c = np.asarray(losses.center_update(c, x, y, 0.5))
    np.testing.assert_allclose(c[0], x.mean(axis=0), atol=1e-2)
    np.testing.assert_array_equal(c[1], 0.0)


def test_softmax_cross_entropy_hard_labels_eq6():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 2], np.int32)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(log_softmax[0, 0] + log_softmax[1, 2]) / 2
    assert float(losses.softmax_cross_entropy(logits, labels)) == pytest.approx(expected, rel=1e-6)


def test_softmax_cross_entropy_distribution_targets():
    logits = np.array([[2.0, 0.0, -1.0]], np.float32)
    dist = np.array([[0.7, 0.3, 0.0]], np.float32)
    log_softmax = logits - np.log(np.exp(logits).sum())
    expected = -(dist * log_softmax).sum()
    assert float(losses.softmax_cross_entropy(logits, dist)) == pytest.approx(expected, rel=1e-6)
    # A one-hot distribution is the same as the hard label.
    onehot = np.array([[1.0, 0.0, 0.0]], np.float32)
    assert float(losses.softmax_cross_entropy(logits, onehot)) == pytest.approx(
        float(losses.softmax_cross_entropy(logits, np.array([0], np.int32))), rel=1e-6
    )


def test_label_smoothing_mixes_the_target_with_uniform():
    logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    labels = jnp.array([0, 2])
    s, k = 0.1, 3
    log_p = np.asarray(jax.nn.log_softmax(logits))
    target = np.full((2, k), s / k)
    target[np.arange(2), np.asarray(labels)] += 1 - s
    expected = -np.mean(np.sum(target * log_p, axis=1))
    assert float(losses.softmax_cross_entropy(logits, labels, s)) == pytest.approx(expected, rel=1e-6)
    # A distribution target is smoothed the same way; zero smoothing is the plain loss.
    dist = jnp.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    smoothed = (1 - s) * np.asarray(dist) + s / k
    got = float(losses.softmax_cross_entropy(logits, dist, s))
    assert got == pytest.approx(-np.mean(np.sum(smoothed * log_p, axis=1)), rel=1e-6)
    plain = float(losses.softmax_cross_entropy(logits, labels))
    assert float(losses.softmax_cross_entropy(logits, labels, 0.0)) == plain != pytest.approx(expected)
