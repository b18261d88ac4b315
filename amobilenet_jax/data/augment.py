"""On-device augmentation and resizing, inside jit.

Every geometric change (rotation, zoom-in crop, translation, horizontal flip) and
the resize to ``data.image_size`` is one affine map from output to source pixel
coordinates, sampled bilinearly once. Evaluation uses the identity map, so it is a
plain resize; at native size that reproduces the image exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _bilinear(image_HxWxC: jax.Array, ys: jax.Array, xs: jax.Array) -> jax.Array:
    """Samples ``image`` at float pixel coordinates; out-of-range reads the edge pixel."""
    h, w = image_HxWxC.shape[0], image_HxWxC.shape[1]
    y0 = jnp.floor(ys)
    x0 = jnp.floor(xs)
    wy = (ys - y0)[..., None]
    wx = (xs - x0)[..., None]
    # Both taps clip from the unclipped floor: a coordinate just below 0 (the identity map
    # gives -1e-6 at the first row) reads row 0 twice, not rows 0 and 1.
    y0i = jnp.clip(y0.astype(jnp.int32), 0, h - 1)
    x0i = jnp.clip(x0.astype(jnp.int32), 0, w - 1)
    y1i = jnp.clip(y0.astype(jnp.int32) + 1, 0, h - 1)
    x1i = jnp.clip(x0.astype(jnp.int32) + 1, 0, w - 1)
    img = image_HxWxC.astype(jnp.float32)
    top = img[y0i, x0i] * (1 - wx) + img[y0i, x1i] * wx
    bottom = img[y1i, x0i] * (1 - wx) + img[y1i, x1i] * wx
    return top * (1 - wy) + bottom * wy


def _warp(image_HxWxC: jax.Array, matrix_2x2: jax.Array, shift_2: jax.Array, out_size: int) -> jax.Array:
    """Output pixel p (in [-1, 1] coordinates) reads source pixel ``matrix @ p + shift``."""
    h, w = image_HxWxC.shape[0], image_HxWxC.shape[1]
    grid = (jnp.arange(out_size, dtype=jnp.float32) + 0.5) / out_size * 2 - 1
    py, px = jnp.meshgrid(grid, grid, indexing="ij")
    sy = matrix_2x2[0, 0] * py + matrix_2x2[0, 1] * px + shift_2[0]
    sx = matrix_2x2[1, 0] * py + matrix_2x2[1, 1] * px + shift_2[1]
    return _bilinear(image_HxWxC, (sy + 1) / 2 * h - 0.5, (sx + 1) / 2 * w - 0.5)


def resize(images_BxHxWxC: jax.Array, out_size: int) -> jax.Array:
    """Bilinear resize to ``out_size`` x ``out_size``; float32 in the input's value range."""
    if images_BxHxWxC.shape[1] == out_size and images_BxHxWxC.shape[2] == out_size:
        return images_BxHxWxC.astype(jnp.float32)
    eye = jnp.eye(2, dtype=jnp.float32)
    zero = jnp.zeros(2, jnp.float32)
    return jax.vmap(lambda im: _warp(im, eye, zero, out_size))(images_BxHxWxC)


def random_affine(rng: jax.Array, batch: int, augment_config) -> tuple[jax.Array, jax.Array]:
    """Per-example affine maps: rotation in [-r, r] degrees, a zoom between in by ``crop`` and out
    by ``scale_out`` of the side (uniform), translation by up to ``translate`` of the side, flip
    with p=0.5. Zooming out reads the edge pixels beyond the image."""
    k_rot, k_crop, k_shift, k_flip = jax.random.split(rng, 4)
    angle = jnp.deg2rad(augment_config.rotation) * jax.random.uniform(k_rot, (batch,), minval=-1.0, maxval=1.0)
    scale = zoom_scale(jax.random.uniform(k_crop, (batch,)), augment_config)
    shift = 2.0 * augment_config.translate * jax.random.uniform(k_shift, (batch, 2), minval=-1.0, maxval=1.0)
    flip = jnp.where(augment_config.flip & jax.random.bernoulli(k_flip, 0.5, (batch,)), -1.0, 1.0)
    cos, sin = jnp.cos(angle) * scale, jnp.sin(angle) * scale
    # Rows: source y, source x; columns: output y, output x. Flip mirrors output x.
    matrix = jnp.stack([jnp.stack([cos, -sin * flip], -1), jnp.stack([sin, cos * flip], -1)], -2)
    return matrix, shift


def zoom_scale(uniform, augment_config):
    """The source window's side for a uniform draw in [0, 1): 1 - crop at 1, 1 + scale_out at 0
    (with ``scale_out`` 0 this is the zoom-in crop of ``1 - crop * uniform``)."""
    return 1.0 - augment_config.crop * uniform + getattr(augment_config, "scale_out", 0.0) * (1.0 - uniform)


def augment(rng: jax.Array, images_BxHxWxC: jax.Array, out_size: int, augment_config) -> jax.Array:
    """Random geometric augmentation plus resize, float32 in the input's value range."""
    matrix, shift = random_affine(rng, images_BxHxWxC.shape[0], augment_config)
    return jax.vmap(lambda im, m, s: _warp(im, m, s, out_size))(images_BxHxWxC, matrix, shift)


def normalize(images: jax.Array, mean: float, std: float) -> jax.Array:
    """uint8-range floats -> (x / 255 - mean) / std, grayscale broadcast to 3 channels."""
    x = (images / 255.0 - mean) / std
    if x.shape[-1] == 1:
        x = jnp.broadcast_to(x, (*x.shape[:-1], 3))
    return x


def prepare_images(images, config, rng=None):
    """uint8 native-size batch -> normalised float batch at ``data.image_size``.

    Training passes ``rng`` (augmentation); evaluation and prediction
    (``amobilenet_jax.inference``) call it without, so a face at prediction time goes through
    exactly the resize and normalisation of training and evaluation.
    """
    size = config.data.image_size
    x = resize(images, size) if rng is None else augment(rng, images, size, config.data.augment)
    return normalize(x, config.data.normalize_mean, config.data.normalize_std)


def crop_maps(config) -> list[tuple[jax.Array, jax.Array]]:
    """``(matrix, shift)`` of each test-time crop of ``eval_crops``: zoom-ins to ``eval_crop_zoom``
    of the side on the centre, then the top-left, top-right, bottom-left and bottom-right
    corners (each crop's window stays inside the image)."""
    if not config.eval_crops:
        return []
    zoom = float(config.eval_crop_zoom)
    m = 1.0 - zoom
    matrix = jnp.eye(2, dtype=jnp.float32) * zoom
    shifts = ((0.0, 0.0), (-m, -m), (-m, m), (m, -m), (m, m))
    return [(matrix, jnp.array(s, jnp.float32)) for s in shifts[: config.eval_crops]]


def num_views(config, crops: bool = True) -> int:
    """How many views' logits an evaluation sums: the whole image and its crops, each with its
    mirror image under ``eval_flip``."""
    return (1 + (len(crop_maps(config)) if crops else 0)) * (2 if config.eval_flip else 1)


def view_batches(images, config, crops: bool = True) -> list[jax.Array]:
    """Normalised float batches of the unmirrored test-time views of a uint8 native-size batch:
    ``prepare_images`` (the whole image) first, then each crop of ``eval_crops`` (``crops``)."""
    views = [prepare_images(images, config)]
    size = config.data.image_size
    for matrix, shift in crop_maps(config) if crops else []:
        x = jax.vmap(lambda im, m=matrix, s=shift: _warp(im, m, s, size))(images)
        views.append(normalize(x, config.data.normalize_mean, config.data.normalize_std))
    return views


# The most images one model call of ``vote`` takes: a small batch's views go through the
# model together (B x V images keep both cores busy where B alone would not), a larger batch's
# one view a call in sequence. Either way the program holds the model once (twice with the
# attention maps), not once per view: it compiles in a third of the time.
# (experiments/views/README.md measures the choice.)
ONE_CALL_IMAGES = 64


def vote(apply, images, config, crops: bool = True, return_attention: bool = False):
    """Summed logits of every test-time view and the whole image's ``aux`` (its attention maps).

    ``apply(x, return_attention) -> (logits, aux)`` is the model in inference mode. The views
    are summed in order: the whole image, its mirror, then each crop and its mirror; without
    crops this is evaluation's two-view sum as it always was."""
    ordered = []
    for x in view_batches(images, config, crops):
        ordered += [x, x[:, :, ::-1, :]] if config.eval_flip else [x]
    logits, aux = None, {}
    if return_attention:
        logits, aux = apply(ordered.pop(0), True)
    if len(ordered) == 1:
        rest = [apply(ordered[0], False)[0]]
    elif ordered:

        def one(x):
            return apply(x, False)[0]

        stacked = jnp.stack(ordered)
        together = stacked.shape[1] * len(ordered) <= ONE_CALL_IMAGES
        out = jax.vmap(one)(stacked) if together else jax.lax.map(one, stacked)
        rest = [out[i] for i in range(len(ordered))]
    else:
        rest = []
    for out in rest:
        logits = out if logits is None else logits + out
    return logits, aux


# Random erasing (Zhong et al. 2020): the rectangle's area as a fraction of the image, and the
# range of its aspect ratio (height / width), drawn log-uniformly.
ERASE_AREA = (0.02, 0.25)
ERASE_ASPECT = (0.3, 1 / 0.3)


def random_erase(rng: jax.Array, images_BxHxWxC: jax.Array, probability: float) -> jax.Array:
    """Sets one random rectangle of each image to 0 (the normalised mean grey) with ``probability``."""
    b, h, w = images_BxHxWxC.shape[:3]
    k_on, k_area, k_aspect, k_y, k_x = jax.random.split(rng, 5)
    area = jax.random.uniform(k_area, (b,), minval=ERASE_AREA[0], maxval=ERASE_AREA[1]) * h * w
    log_lo, log_hi = jnp.log(ERASE_ASPECT[0]), jnp.log(ERASE_ASPECT[1])
    aspect = jnp.exp(jax.random.uniform(k_aspect, (b,), minval=log_lo, maxval=log_hi))
    eh = jnp.clip(jnp.sqrt(area * aspect), 1.0, h)
    ew = jnp.clip(jnp.sqrt(area / aspect), 1.0, w)
    top = jax.random.uniform(k_y, (b,)) * (h - eh)
    left = jax.random.uniform(k_x, (b,)) * (w - ew)
    rows = jnp.arange(h, dtype=jnp.float32)[None, :] + 0.5
    cols = jnp.arange(w, dtype=jnp.float32)[None, :] + 0.5
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    on = jax.random.bernoulli(k_on, probability, (b,))
    mask = in_rows[:, :, None] & in_cols[:, None, :] & on[:, None, None]
    return jnp.where(mask[..., None], 0.0, images_BxHxWxC)


# Degradation (``data.augment.degrade``): what a face cut from a poor frame looks like. A degraded
# image takes each effect below with even odds, at a strength drawn uniformly from its range, in
# a camera's order: seen small (area-shrunk to a side of SMALL_SIDE pixels of every 48, then
# enlarged back bilinearly, as predict enlarges a small face's crop), optical blur (Gaussian sigma
# in pixels), light (contrast about the image's mean, then brightness), sensor noise (its standard
# deviation in grey levels), JPEG at a quality in JPEG_QUALITY (8x8 blocks, the standard luminance
# table). The ranges cover the conditions of experiments/faces/hard.py's frames.
SMALL_SIDE = (12.0, 40.0)
BLUR_SIGMA = (0.4, 1.4)
CONTRAST = (0.4, 1.0)
BRIGHTNESS = (0.5, 1.2)
NOISE_STD = (2.0, 10.0)
JPEG_QUALITY = (30.0, 75.0)
_JPEG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


def _seen_small(side: jax.Array, n: int) -> jax.Array:
    """``[n, n]``: shrink by area averaging to ``side`` * n / 48 pixels, then enlarge bilinearly
    back to ``n`` (pixel centres at +0.5, edges repeated), along one axis."""
    small = jnp.maximum(1.0, jnp.round(side * n / 48.0))
    ratio = n / small  # source pixels per small pixel
    i = jnp.arange(n, dtype=jnp.float32)[:, None]  # small pixel (rows from ``small`` on are unused)
    j = jnp.arange(n, dtype=jnp.float32)[None, :]
    overlap = jnp.clip(jnp.minimum(j + 1, (i + 1) * ratio) - jnp.maximum(j, i * ratio), 0.0, None) / ratio
    down = jnp.where(i < small, overlap, 0.0)
    at = jnp.clip((jnp.arange(n, dtype=jnp.float32) + 0.5) / ratio - 0.5, 0.0, small - 1)[:, None]
    up = jnp.maximum(0.0, 1.0 - jnp.abs(jnp.arange(n, dtype=jnp.float32)[None, :] - at))
    return up @ down


def _blur(sigma: jax.Array, n: int) -> jax.Array:
    """``[n, n]``: a Gaussian of ``sigma`` pixels along one axis, each row summing to 1."""
    d = jnp.arange(n, dtype=jnp.float32)[:, None] - jnp.arange(n, dtype=jnp.float32)[None, :]
    g = jnp.exp(-0.5 * (d / sigma) ** 2)
    return g / g.sum(1, keepdims=True)


def _dct8() -> jax.Array:
    k = jnp.arange(8, dtype=jnp.float32)[:, None]
    x = jnp.arange(8, dtype=jnp.float32)[None, :]
    c = jnp.cos((2 * x + 1) * k * jnp.pi / 16) * jnp.sqrt(2.0 / 8)
    return c.at[0].multiply(1 / jnp.sqrt(2.0))  # orthonormal DCT-II


def jpeg(image_HxW: jax.Array, quality: jax.Array) -> jax.Array:
    """One grey image (0-255, sides a multiple of 8) through JPEG's lossy step at ``quality``
    (1-100): each 8x8 block's DCT quantised by the standard luminance table, scaled as libjpeg does."""
    h, w = image_HxW.shape
    scale = jnp.where(quality < 50, 5000.0 / quality, 200.0 - 2.0 * quality)
    table = jnp.clip(jnp.floor((jnp.array(_JPEG_LUMA, jnp.float32) * scale + 50) / 100), 1, 255)
    c = _dct8()
    blocks = (image_HxW - 128.0).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)
    coefficients = c @ blocks @ c.T
    blocks = c.T @ (jnp.round(coefficients / table) * table) @ c
    return blocks.transpose(0, 2, 1, 3).reshape(h, w) + 128.0


def degrade(rng: jax.Array, images_BxHxWxC: jax.Array, probability: float) -> jax.Array:
    """Degrades each image (grey levels 0-255) with ``probability``: seen small, blurred, lit
    flat or dim, noisy, JPEG-compressed (each with even odds; ranges above). Channels share
    every draw, so a grey image stays grey. JPEG applies where both sides are multiples of 8."""
    b, h, w, _ = images_BxHxWxC.shape
    keys = jax.random.split(rng, 12)

    def draw(key, low_high):
        return jax.random.uniform(key, (b,), minval=low_high[0], maxval=low_high[1])

    on = jax.random.bernoulli(keys[0], probability, (b,))
    use = [on & jax.random.bernoulli(k, 0.5, (b,)) for k in keys[1:6]]
    side, sigma = draw(keys[6], SMALL_SIDE), draw(keys[7], BLUR_SIGMA)
    contrast, brightness = draw(keys[8], CONTRAST), draw(keys[9], BRIGHTNESS)
    noise_std, quality = draw(keys[10], NOISE_STD), draw(keys[11], JPEG_QUALITY)

    def one(image, use_small, use_blur, use_light, use_noise, use_jpeg, side, sigma, contrast, brightness, noise_std,
            quality, key):  # fmt: skip
        rows = jnp.eye(h)
        cols = jnp.eye(w)
        rows = jnp.where(use_small, _seen_small(side, h), rows)
        cols = jnp.where(use_small, _seen_small(side, w), cols)
        rows = jnp.where(use_blur, _blur(sigma, h), jnp.eye(h)) @ rows
        cols = jnp.where(use_blur, _blur(sigma, w), jnp.eye(w)) @ cols
        x = jnp.einsum("ij,jkc,lk->ilc", rows, image, cols)
        mean = x.mean()
        x = jnp.where(use_light, (mean + (x - mean) * contrast) * brightness, x)
        x = x + jnp.where(use_noise, noise_std, 0.0) * jax.random.normal(key, (h, w, 1))
        x = jnp.clip(x, 0.0, 255.0)
        if h % 8 == 0 and w % 8 == 0:
            compressed = jax.vmap(lambda c: jpeg(c, quality), in_axes=2, out_axes=2)(x)
            x = jnp.where(use_jpeg, jnp.clip(compressed, 0.0, 255.0), x)
        return x

    noise_keys = jax.random.split(jax.random.fold_in(rng, 1), b)
    return jax.vmap(one)(images_BxHxWxC.astype(jnp.float32), *use, side, sigma, contrast, brightness, noise_std,
                         quality, noise_keys)  # fmt: skip


def mix(rng: jax.Array, images_BxHxWxC: jax.Array, targets_BxK: jax.Array, mixup: float, cutmix: float):
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) of each image with the batch's reverse.

    ``mixup`` and ``cutmix`` are the Beta(alpha, alpha) parameters of the mixing share (0: off);
    with both on, each batch takes one of them at even odds. The targets (vote distributions or
    one-hot labels) mix in the share of each image that is seen: for CutMix the pasted box's
    exact area. Returns the images, the targets and, per example, whether its own image holds
    at least half (for the center loss, which needs one class per example).
    """
    k_which, k_mix, k_cut, k_y, k_x = jax.random.split(rng, 5)
    b, h, w = images_BxHxWxC.shape[:3]
    partner_images, partner_targets = images_BxHxWxC[::-1], targets_BxK[::-1]
    mixed, share = images_BxHxWxC, jnp.ones(())
    if mixup > 0:
        lam = jax.random.beta(k_mix, mixup, mixup)
        mixup_images = lam * images_BxHxWxC + (1 - lam) * partner_images
    if cutmix > 0:
        lam_cut = jax.random.beta(k_cut, cutmix, cutmix)
        side = jnp.sqrt(1.0 - lam_cut)  # the box's side as a fraction of the image's
        bh, bw = jnp.round(side * h), jnp.round(side * w)
        top = jnp.floor(jax.random.uniform(k_y) * (h - bh + 1))
        left = jnp.floor(jax.random.uniform(k_x) * (w - bw + 1))
        rows = jnp.arange(h)[:, None]
        cols = jnp.arange(w)[None, :]
        box = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
        cutmix_images = jnp.where(box[None, :, :, None], partner_images, images_BxHxWxC)
        cutmix_share = 1.0 - bh * bw / (h * w)
    if mixup > 0 and cutmix > 0:
        use_cutmix = jax.random.bernoulli(k_which, 0.5)
        mixed = jnp.where(use_cutmix, cutmix_images, mixup_images)
        share = jnp.where(use_cutmix, cutmix_share, lam)
    elif mixup > 0:
        mixed, share = mixup_images, lam
    elif cutmix > 0:
        mixed, share = cutmix_images, cutmix_share
    targets = share * targets_BxK + (1 - share) * partner_targets
    return mixed, targets, jnp.broadcast_to(share >= 0.5, (b,))
