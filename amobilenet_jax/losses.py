"""Losses of the paper: softmax cross-entropy (Eq. 6) and center loss (Eqs. 7-9).

Class centers are state, not parameters: the loss treats them as constants
(``stop_gradient``), so gradients reach only the embeddings (Eq. 8), and
``center_update`` moves them by the paper's own rule (Eq. 9) at rate alpha.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits_BxK: jax.Array, targets: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Mean softmax cross-entropy (Eq. 6).

    ``targets`` is either integer labels ``[B]`` or a label distribution ``[B, K]``
    (FERPlus vote distributions), in which case this is the cross-entropy to it.
    ``label_smoothing`` s mixes the target with the uniform distribution:
    ``(1 - s) * target + s / K`` (0, the paper's recipe, leaves it as it is).
    """
    logits_BxK = logits_BxK.astype(jnp.float32)
    if targets.ndim != logits_BxK.ndim and label_smoothing == 0.0:
        return optax.softmax_cross_entropy_with_integer_labels(logits_BxK, targets).mean()
    if targets.ndim != logits_BxK.ndim:
        targets = jax.nn.one_hot(targets, logits_BxK.shape[-1])
    targets = targets.astype(jnp.float32)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits_BxK, targets).mean()


def distillation_loss(logits_BxK: jax.Array, teacher_probs_BxK: jax.Array, temperature: float) -> jax.Array:
    """Hinton et al.'s soft-target loss: ``T^2`` times the cross-entropy from the teachers' softened
    prediction to the student's softmax at the same temperature ``T`` (the T^2 keeps its gradients
    on the scale of the hard-target loss's)."""
    scaled = logits_BxK.astype(jnp.float32) / temperature
    return temperature**2 * optax.softmax_cross_entropy(scaled, teacher_probs_BxK).mean()


def center_loss(embeddings_BxD: jax.Array, labels_B: jax.Array, centers_KxD: jax.Array) -> jax.Array:
    """L_c = 1/(2m) * sum_i ||x_i - c_{y_i}||^2 (Eq. 7); gradient x_i - c_{y_i} / m (Eq. 8)."""
    centers_BxD = jax.lax.stop_gradient(centers_KxD)[labels_B]
    diff = embeddings_BxD.astype(jnp.float32) - centers_BxD
    return 0.5 * jnp.mean(jnp.sum(diff * diff, axis=-1))


def center_update(
    centers_KxD: jax.Array, embeddings_BxD: jax.Array, labels_B: jax.Array, rate: float | jax.Array
) -> jax.Array:
    """c_j <- c_j - alpha * delta_c_j with delta_c_j = sum_{y_i=j}(c_j - x_i) / (1 + n_j) (Eq. 9).

    Classes absent from the batch have n_j = 0 and stay where they are.
    """
    num_classes = centers_KxD.shape[0]
    onehot_BxK = jax.nn.one_hot(labels_B, num_classes, dtype=jnp.float32)
    counts_K = onehot_BxK.sum(axis=0)
    sums_KxD = onehot_BxK.T @ embeddings_BxD.astype(jnp.float32)
    delta_KxD = (counts_K[:, None] * centers_KxD - sums_KxD) / (1.0 + counts_K[:, None])
    return centers_KxD - rate * delta_KxD
