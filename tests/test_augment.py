"""The training-time augmentations of data/augment.py beyond the affine map: zoom out (scale
jitter), random erasing, degradation, and mixup/CutMix of images with their targets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from amobilenet_jax.data import augment
from amobilenet_jax.data.augment import ERASE_AREA, degrade, mix, random_erase, zoom_scale


def test_zoom_scale_spans_crop_in_to_scale_out_and_is_the_old_crop_without_it():
    u = np.linspace(0.0, 1.0, 11)
    old = ConfigDict({"crop": 0.2, "scale_out": 0.0})
    np.testing.assert_allclose(zoom_scale(u, old), 1.0 - 0.2 * u)
    both = ConfigDict({"crop": 0.2, "scale_out": 0.1})
    scales = zoom_scale(u, both)
    assert scales.min() == pytest.approx(0.8) and scales.max() == pytest.approx(1.1)


def test_random_erase_blanks_one_rectangle_of_the_stated_area_per_image():
    images = jnp.ones((64, 48, 48, 3))
    erased = np.asarray(random_erase(jax.random.PRNGKey(0), images, 1.0))
    for image in erased:
        ys, xs = np.nonzero(image[..., 0] == 0.0)
        assert len(ys), "every image is erased at probability 1"
        # One axis-aligned rectangle, the same in every channel.
        assert len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert (image[ys, xs] == 0.0).all()
        area = len(ys) / (48 * 48)
        assert ERASE_AREA[0] / 2 <= area <= ERASE_AREA[1] * 1.2  # whole pixels round the drawn area
    untouched = np.asarray(random_erase(jax.random.PRNGKey(0), images, 0.0))
    np.testing.assert_array_equal(untouched, 1.0)
    some = np.asarray(random_erase(jax.random.PRNGKey(1), images, 0.5))
    assert 16 < int((some == 0.0).any(axis=(1, 2, 3)).sum()) < 48


def _batch(b=8, k=4, size=16):
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(b, size, size, 1)), jnp.float32)
    targets = jnp.asarray(rng.dirichlet(np.ones(k), size=b), jnp.float32)
    return images, targets


def test_mixup_blends_each_image_with_the_batch_reversed_and_its_targets_alike():
    images, targets = _batch()
    mixed, mixed_targets, own = mix(jax.random.PRNGKey(3), images, targets, mixup=0.4, cutmix=0.0)
    # The share lam is one number a batch: recover it from one pixel and check everything with it.
    a, b, m = np.asarray(images), np.asarray(images)[::-1], np.asarray(mixed)
    lam = (m[0, 0, 0, 0] - b[0, 0, 0, 0]) / (a[0, 0, 0, 0] - b[0, 0, 0, 0])
    np.testing.assert_allclose(m, lam * a + (1 - lam) * b, atol=1e-5)
    t = np.asarray(targets)
    np.testing.assert_allclose(mixed_targets, lam * t + (1 - lam) * t[::-1], atol=1e-5)
    np.testing.assert_allclose(np.asarray(mixed_targets).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(own, lam >= 0.5)


def test_cutmix_pastes_a_box_of_the_partner_and_weights_targets_by_its_exact_area():
    images, targets = _batch(size=32)
    shares = []
    for seed in range(6):
        mixed, mixed_targets, own = mix(jax.random.PRNGKey(seed), images, targets, mixup=0.0, cutmix=1.0)
        a, b, m = np.asarray(images), np.asarray(images)[::-1], np.asarray(mixed)
        from_partner = np.all(m == b, axis=(0, 3)) & ~np.all(a == b, axis=(0, 3))
        assert np.all((m == a) | (m == b))  # every pixel is one image's or the other's, not a blend
        share = 1.0 - from_partner.sum() / (32 * 32)
        if from_partner.any():
            ys, xs = np.nonzero(from_partner)
            assert from_partner.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # one box
        t = np.asarray(targets)
        np.testing.assert_allclose(mixed_targets, share * t + (1 - share) * t[::-1], atol=1e-5)
        np.testing.assert_array_equal(own, share >= 0.5)
        shares.append(share)
    assert len(set(np.round(shares, 4))) > 1


def test_mixup_and_cutmix_together_take_one_of_them_a_batch():
    images, targets = _batch(size=16)
    kinds = set()
    for seed in range(12):
        mixed, _, _ = mix(jax.random.PRNGKey(seed), images, targets, mixup=0.4, cutmix=1.0)
        a, b, m = np.asarray(images), np.asarray(images)[::-1], np.asarray(mixed)
        kinds.add("cutmix" if np.all((m == a) | (m == b)) else "mixup")
    assert kinds == {"mixup", "cutmix"}


def _face_like(n: int = 8, size: int = 48, seed: int = 0) -> np.ndarray:
    """Grey images with detail at every scale: a smooth ramp plus fine texture, 0-255."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 190, size)[None, :, None] * np.ones((size, 1, 1))
    return np.clip(ramp[None] + rng.normal(0, 30, (n, size, size, 1)), 0, 255).astype(np.float32)


def test_degrade_is_off_at_zero_and_keeps_grey_images_grey_in_range():
    grey = np.repeat(_face_like(), 3, axis=-1)  # a grey image as the model sees it: 3 equal channels
    np.testing.assert_allclose(np.asarray(degrade(jax.random.PRNGKey(0), grey, 0.0)), grey, atol=1e-3)
    out = np.asarray(jax.jit(degrade, static_argnums=2)(jax.random.PRNGKey(0), grey, 1.0))
    assert out.min() >= 0.0 and out.max() <= 255.0
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    changed = np.abs(out - grey).mean(axis=(1, 2, 3)) > 1.0
    assert changed.sum() >= 6  # each image draws 5 effects at even odds: nearly all take one


def test_seen_small_and_blur_keep_the_mean_and_lose_the_fine_detail():
    n = 48
    checker = (np.indices((n, n)).sum(0) % 2 * 255.0)[:, :, None]  # detail of one pixel
    for matrix in (augment._seen_small(jnp.float32(12.0), n), augment._blur(jnp.float32(1.4), n)):
        m = np.asarray(matrix)
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-5)  # a flat image stays flat
        out = np.einsum("ij,jkc,lk->ilc", m, checker, m)
        assert abs(out.mean() - checker.mean()) < 2.0 and out.std() < 0.1 * checker.std()
    # a face seen at 24 px of 48 keeps its coarse shape: a ramp comes back nearly as it was
    ramp = np.linspace(0, 255, n)[None, :, None] * np.ones((n, 1, 1))
    m = np.asarray(augment._seen_small(jnp.float32(24.0), n))
    np.testing.assert_allclose(np.einsum("ij,jkc,lk->ilc", m, ramp, m)[:, 4:-4], ramp[:, 4:-4], atol=1.0)


def test_jpeg_step_is_libjpegs_within_a_grey_level():
    import cv2

    image = _face_like(1)[0, :, :, 0]
    for quality in (35, 70):
        ok, data = cv2.imencode(".jpg", image.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
        theirs = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE).astype(np.float32)
        ours = np.clip(np.asarray(augment.jpeg(jnp.asarray(image.astype(np.uint8), jnp.float32), quality)), 0, 255)
        loss = np.abs(theirs - image).mean()
        assert loss > 4.0  # the compression is lossy at these qualities
        assert np.abs(ours - theirs).mean() < 0.25 * loss  # and ours loses what libjpeg loses
