"""Synthetic facial-expression images: a built-in stand-in for FERPlus.

This data set is SYNTHETIC. It exists so that the training pipeline runs end to end on a fresh
machine with no download; accuracy on it says nothing about facial expression recognition on
real faces: never report it as a FER result.

Each example is a 48x48 grayscale cartoon face in one of the 8 FERPlus classes, drawn from
analytic shapes on the pixel grid with numpy broadcasting (nothing loops over pixels or
examples). A few parameters carry the expression (mouth curve, opening, smirk, brows, eyes):
each class has a mean for each and every example adds jitter, scaled with all nuisance
variation (pose, lighting, noise, occluders) by ``difficulty``.

Deterministic and prefix-stable: block ``b`` of 64 examples draws everything from
``np.random.default_rng([seed, b])``, so ``generate(k, seed)`` is the first ``k`` examples of
``generate(n, seed)``, and each run of 8 examples holds the 8 classes once. The per-pixel
arithmetic avoids sin and cos (float32 +, -, *, /, sqrt, abs, min, max), which IEEE 754 rounds
alike on every CPU, so with the same numpy the bytes should match across machines.
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
CLASS_ABBREVIATIONS: tuple[str, ...] = ("NE", "HA", "SU", "SA", "AN", "DI", "FE", "CO")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 48

# Offset between the train and test seeds, so the two splits never share a stream.
TEST_SEED_OFFSET = 1_000_003

# Examples per random-stream block; the prefix property holds because blocks are fixed.
_BLOCK = 64
# Examples per vectorised chunk (a multiple of _BLOCK): ~2.4 MB per float32 array at 48x48.
_CHUNK = 256

# Expression parameters, in the column order of _CLASS_MEANS. Face coordinates: u to the
# right, v downwards, 1.0 = half the image side at scale 1; the head is about 0.74 x 0.92.
#   curve:      lift of both mouth corners (+ smile, - frown)
#   open:       half-height of the mouth opening at its centre
#   width:      half-width of the mouth
#   smirk:      lift of one mouth corner only (contempt); the side is random
#   wave:       odd, S-shaped bend of the mouth line (disgust)
#   lip_raise:  how much further the upper lip opens than the lower (disgust snarl)
#   brow_raise: lift of both brows
#   brow_tilt:  lift of the inner brow ends (+ sad/fear slant, - angry V)
#   eye_open:   eye height relative to a neutral eye
EXPRESSION_PARAMS: tuple[str, ...] = (
    "curve",
    "open",
    "width",
    "smirk",
    "wave",
    "lip_raise",
    "brow_raise",
    "brow_tilt",
    "eye_open",
)

# fmt: off
_CLASS_MEANS = np.array(
    [
        # curve  open   width  smirk  wave   lip_r  b_rais b_tilt eye
        [0.00,   0.000, 0.30,  0.00,  0.00,  0.0,   0.00,  0.00,  1.00],  # neutral
        [0.11,   0.030, 0.34,  0.00,  0.00,  0.0,   0.01,  0.00,  0.80],  # happiness
        [0.00,   0.150, 0.14,  0.00,  0.00,  0.0,   0.10,  0.02,  1.50],  # surprise
        [-0.08,  0.000, 0.27,  0.00,  0.00,  0.0,   0.02,  0.08,  0.85],  # sadness
        [-0.02,  0.000, 0.24,  0.00,  0.00,  0.0,  -0.05, -0.10,  0.60],  # anger
        [-0.03,  0.030, 0.27,  0.00,  0.03,  0.6,  -0.03, -0.05,  0.60],  # disgust
        [-0.02,  0.070, 0.28,  0.00,  0.00,  0.0,   0.06,  0.07,  1.40],  # fear
        [0.00,   0.000, 0.28,  0.14,  0.00,  0.0,   0.00,  0.00,  0.95],  # contempt
    ]
)
# Jitter standard deviation at difficulty 1; it sets how much the classes overlap.
_JITTER_STD = np.array([0.025, 0.015, 0.025, 0.02, 0.012, 0.15, 0.025, 0.025, 0.12])
# Lower bounds that keep every drawn face sensible (no negative opening or width).
_PARAM_MIN = np.array([-np.inf, 0.0, 0.08, -np.inf, -np.inf, 0.0, -np.inf, -np.inf, 0.3])
# fmt: on

# 1 is the intended setting; larger values extrapolate every range linearly.
_MAX_DIFFICULTY = 3.0

# Uniform random numbers per example, all drawn even when unused (fixed consumption).
_NUM_UNIFORMS = 20


def generate(
    num_examples: int, seed: int, image_size: int = IMAGE_SIZE, difficulty: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``num_examples`` synthetic faces.

    Returns (images uint8 [N, image_size, image_size, 1], labels int32 [N]). The same
    (num_examples, seed, image_size, difficulty) always gives identical bytes, and the
    first k examples do not depend on num_examples (see the module docstring).
    ``seed`` must be a non-negative integer; ``difficulty`` in [0, 3] scales all variation
    (0: one canonical face per class, 1: the intended setting).
    """
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (it seeds a numpy SeedSequence), got {seed}")
    if not 0.0 <= difficulty <= _MAX_DIFFICULTY:
        # Beyond _MAX_DIFFICULTY the scale and head size could reach zero or below.
        raise ValueError(f"difficulty must be in [0, {_MAX_DIFFICULTY}], got {difficulty}")
    images = np.empty((num_examples, image_size, image_size, 1), np.uint8)
    labels = np.empty(num_examples, np.int32)
    for start in range(0, num_examples, _CHUNK):
        stop = min(start + _CHUNK, num_examples)
        chunk_labels, normals, uniforms, noise = _draw_randoms(seed, start, stop, image_size)
        params = _sample_params(chunk_labels, normals, uniforms, difficulty)
        pixels = _render(params, noise, image_size)
        # x * 255 + 0.5 truncated is round-half-up; clip first so the cast cannot wrap.
        images[start:stop, :, :, 0] = np.clip(pixels * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
        labels[start:stop] = chunk_labels
    return images, labels


def load_splits(
    num_train: int, num_test: int, seed: int = 0, image_size: int = IMAGE_SIZE, difficulty: float = 1.0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train and test splits; the test seed is offset so the two never share a random stream."""
    return {
        "train": generate(num_train, seed, image_size, difficulty),
        "test": generate(num_test, seed + TEST_SEED_OFFSET, image_size, difficulty),
    }


def _draw_block(seed: int, block: int, image_size: int) -> tuple[np.ndarray, ...]:
    """All random numbers of one block of _BLOCK examples, from the block's own stream."""
    rng = np.random.default_rng([seed, block])
    # Each row of 8 is a permutation of the classes: balanced labels, shuffled by the seed.
    order = np.tile(np.arange(NUM_CLASSES, dtype=np.int32), (_BLOCK // NUM_CLASSES, 1))
    labels = rng.permuted(order, axis=1).reshape(-1)
    normals = rng.standard_normal((_BLOCK, len(EXPRESSION_PARAMS)))
    uniforms = rng.random((_BLOCK, _NUM_UNIFORMS))
    # Drawn last so the face parameters above do not depend on image_size.
    noise = rng.standard_normal((_BLOCK, image_size, image_size), dtype=np.float32)
    return labels, normals, uniforms, noise


def _draw_randoms(seed: int, start: int, stop: int, image_size: int) -> tuple[np.ndarray, ...]:
    """Random numbers for examples [start, stop); start must be a multiple of _BLOCK."""
    blocks = [_draw_block(seed, b, image_size) for b in range(start // _BLOCK, -(-stop // _BLOCK))]
    return tuple(np.concatenate(parts)[: stop - start] for parts in zip(*blocks, strict=True))


def _sample_params(
    labels: np.ndarray, normals: np.ndarray, uniforms: np.ndarray, difficulty: float
) -> dict[str, np.ndarray]:
    """Maps raw random numbers to per-example drawing parameters, float32 arrays of shape [B]."""
    d = float(difficulty)
    expr = np.maximum(_CLASS_MEANS[labels] + d * _JITTER_STD * normals, _PARAM_MIN)
    p = {name: expr[:, k] for k, name in enumerate(EXPRESSION_PARAMS)}
    unit = uniforms
    sym = 2.0 * unit - 1.0  # uniform in [-1, 1]
    p["smirk_side"] = np.where(unit[:, 0] < 0.5, -1.0, 1.0)  # random even at difficulty 0
    # Rotation up to +-15 deg from the half-angle tangent h: cos = (1-h^2)/(1+h^2),
    # sin = 2h/(1+h^2). Rational, so no libm sin/cos whose last bit varies by CPU.
    half_tan = 0.13165249758739583 * d * sym[:, 1]  # tan(7.5 deg)
    p["cos"] = (1.0 - half_tan**2) / (1.0 + half_tan**2)
    p["sin"] = 2.0 * half_tan / (1.0 + half_tan**2)
    p["scale"] = 1.0 + d * np.where(sym[:, 2] < 0, 0.2, 0.15) * sym[:, 2]  # 0.8 .. 1.15
    p["tx"], p["ty"] = d * sym[:, 3] / 6.0, d * sym[:, 4] / 6.0  # +-4 px of 48
    # Face proportions differ between people.
    p["head_rx"] = 0.74 + 0.07 * d * sym[:, 5]
    p["head_ry"] = 0.92 + 0.05 * d * sym[:, 6]
    p["eye_dx"] = 0.30 + 0.03 * d * sym[:, 7]
    p["feature_dy"] = 0.05 * d * sym[:, 8]  # all inner features up or down together
    # Photometry: background darker than the skin, both varying, plus a linear light gradient.
    p["background"] = 0.28 + 0.18 * d * sym[:, 9]
    p["skin"] = 0.70 + 0.15 * d * sym[:, 10]
    p["feature_contrast"] = 1.0 + 0.3 * d * sym[:, 11]
    p["light_x"], p["light_y"] = 0.25 * d * sym[:, 12], 0.15 * d * sym[:, 13]
    p["noise_std"] = d * (0.015 + 0.045 * unit[:, 14])
    # A rare occluding blob (hand, hair, glare): 8% of examples at difficulty 1.
    p["occluded"] = unit[:, 15] < 0.08 * d
    p["occ_x"], p["occ_y"] = 1.4 * sym[:, 16], 1.4 * sym[:, 17]
    p["occ_r"] = 0.2 + 0.25 * unit[:, 18]
    p["occ_level"] = unit[:, 19]
    return {name: value.astype(np.float32) for name, value in p.items()}


# Face geometry, in face units (see EXPRESSION_PARAMS for the coordinate frame).
_EYE_V = -0.12  # eye centre height
_EYE_HALF_WIDTH = 0.13
_EYE_HALF_HEIGHT = 0.06  # at eye_open = 1
_IRIS_RADIUS = 0.06
_BROW_CENTRE = 0.285  # |u| of the brow midpoint; brows span |u| in [0.10, 0.47]
_BROW_HALF_LENGTH = 0.185
_BROW_HALF_WIDTH = 0.035
_BROW_ARCH = 0.8  # the brow ends bend down by _BROW_ARCH * along^2
_NOSTRIL_U, _NOSTRIL_V, _NOSTRIL_RX, _NOSTRIL_RY = 0.07, 0.29, 0.045, 0.025
_MOUTH_V = 0.56  # mouth centre height
_LIP = 0.03  # half-thickness of the closed mouth line


def _col(x: np.ndarray) -> np.ndarray:
    """Per-example values [B] as [B, 1, 1], to broadcast over the pixel grid."""
    return x[:, None, None]


def _inside(x: np.ndarray, edge, gain) -> np.ndarray:
    """Coverage of the region x < edge, ramped over one pixel; gain = pixels per unit of x.

    Folding edge and gain into one per-example offset keeps it to three full-size operations.
    """
    return np.clip((edge * gain + 0.5) - x * gain, 0.0, 1.0)


def _over(image: np.ndarray, value, alpha: np.ndarray) -> np.ndarray:
    """Paints ``value`` over ``image`` with coverage ``alpha``."""
    return image + (value - image) * alpha


def _ellipse_q(u: np.ndarray, v: np.ndarray, rx, ry) -> np.ndarray:
    """(u/rx)^2 + (v/ry)^2, below 1 inside the ellipse.

    Near the rim q - 1 is about 2 * distance / r, so _inside(q, 1, r * px / 2) anti-aliases
    it without a sqrt: exact across the axis of radius r, a softer ramp along the other.
    """
    return (u * (1.0 / rx)) ** 2 + (v * (1.0 / ry)) ** 2


def _halo(radius, px):
    """Factor on an _ellipse_q shape's radii beyond which its ramp is exactly 0."""
    return np.sqrt(1.0 + 1.0 / (radius * px))


def _pixel_axis(size: int) -> np.ndarray:
    """Pixel-centre coordinates along one image axis, in [-1, 1]."""
    return ((np.arange(size, dtype=np.float32) + 0.5) * np.float32(2.0 / size) - 1.0).astype(np.float32)


def _pixels_per_unit(p: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Pixels per face unit, [B]."""
    return p["scale"] * np.float32(size / 2.0)


def _face_coords(p: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres mapped into face coordinates by the inverse pose, each [B, size, size]."""
    axis = _pixel_axis(size)
    x = axis[None, None, :] - _col(p["tx"])
    y = axis[None, :, None] - _col(p["ty"])
    inv_scale = np.float32(1.0) / _col(p["scale"])
    cos, sin = _col(p["cos"]) * inv_scale, _col(p["sin"]) * inv_scale
    return cos * x + sin * y, cos * y - sin * x


def _render(p: dict[str, np.ndarray], noise: np.ndarray, size: int) -> np.ndarray:
    """Draws a chunk of faces as float32 [B, size, size], nominally in [0, 1].

    Each inner feature is evaluated only inside a pixel box that holds it in every example
    of the chunk (see _window). Coverage is exactly 0 outside the box, so the result equals
    drawing on the full grid, at a fraction of the cost.
    """
    u, v = _face_coords(p, size)
    px = _pixels_per_unit(p, size)
    skin = _col(p["skin"])
    image = _draw_head(u, v, _col(px), p, skin)
    v = v - _col(p["feature_dy"])
    ink = skin * (1.0 - 0.75 * _col(p["feature_contrast"]))  # colour of brows and lips
    au = np.abs(u)  # eyes, brows and nostrils are mirror-symmetric about u = 0
    features = (
        (_draw_eyes_and_brows, _eyes_and_brows_box(p, px)),
        (_draw_nostrils, _nostrils_box(px)),
        (_draw_mouth, _mouth_box(p)),
    )
    for draw, face_box in features:
        box = (slice(None), *_window(p, size, *face_box))
        image[box] = draw(image[box], u[box], au[box], v[box], _col(px), p, skin, ink)
    return _photometry(image, p, noise, size)


def _window(p: dict[str, np.ndarray], size: int, u_half, v_lo, v_hi) -> tuple[slice, slice]:
    """Rows and columns of the smallest pixel box holding, for every example of the chunk,
    the face-space box |u| <= u_half, v_lo <= v <= v_hi (feature coordinates, [B] arrays).

    The box is padded by one pixel in face space (beyond any one-pixel ramp) and by one
    more after rounding, so every pixel outside it would get coverage exactly 0.
    """
    pad = 1.0 / _pixels_per_unit(p, size)
    u_half, v_lo, v_hi = u_half + pad, v_lo + p["feature_dy"] - pad, v_hi + p["feature_dy"] + pad
    cos, sin, scale = p["cos"], p["sin"], p["scale"]
    corners_u = np.stack([-u_half, u_half, -u_half, u_half])
    corners_v = np.stack([v_lo, v_lo, v_hi, v_hi])
    # Forward pose (the inverse of _face_coords), then image coordinates to pixel indices.
    x = p["tx"] + scale * (cos * corners_u - sin * corners_v)
    y = p["ty"] + scale * (sin * corners_u + cos * corners_v)

    def span(coord: np.ndarray) -> slice:
        index = (coord + 1.0) * (size / 2.0) - 0.5
        return slice(int(np.clip(np.floor(index.min()) - 1, 0, size)), int(np.clip(np.ceil(index.max()) + 2, 0, size)))

    return span(y), span(x)


def _draw_head(u, v, px, p, skin) -> np.ndarray:
    """Oval head on the background, darker towards its rim so it reads as a rounded surface."""
    rx, ry = _col(p["head_rx"]), _col(p["head_ry"])
    q = _ellipse_q(u, v, rx, ry)
    alpha = _inside(q, 1.0, np.minimum(rx, ry) * px * 0.5)
    rim = np.clip(q, 0.0, 1.0)
    shaded = skin - (0.3 * skin) * (rim * rim)
    return _over(_col(p["background"]), shaded, alpha)


def _brow_line(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Height of the brow midpoint and the brow's slope along |u|, each [B].

    The inner end (|u| = 0.10) rises by brow_tilt and the outer end (|u| = 0.47) drops by
    0.3 of it. Brows also ride up a little with wide eyes (surprise, fear).
    """
    tilt = p["brow_tilt"]
    mid_v = -0.32 - p["brow_raise"] - 0.03 * (p["eye_open"] - 1.0) - 0.35 * tilt
    return mid_v, tilt * (1.3 / (2.0 * _BROW_HALF_LENGTH))


def _eyes_and_brows_box(p: dict[str, np.ndarray], px: np.ndarray) -> tuple[np.ndarray, ...]:
    """Face-space extent of eyes and brows, anti-aliasing halo included."""
    half_height = _EYE_HALF_HEIGHT * p["eye_open"]
    halo = _halo(half_height, px)
    mid_v, slope = _brow_line(p)
    reach = _BROW_HALF_LENGTH + 1.0 / px  # the square brow ends ramp over one pixel
    bend = np.abs(slope) * reach
    u_half = np.maximum(p["eye_dx"] + _EYE_HALF_WIDTH * halo, _BROW_CENTRE + reach)
    v_lo = mid_v - bend - _BROW_HALF_WIDTH
    v_hi = np.maximum(_EYE_V + half_height * halo, mid_v + bend + _BROW_ARCH * reach**2 + _BROW_HALF_WIDTH)
    return u_half, v_lo, v_hi


def _draw_eyes_and_brows(image, u, au, v, px, p, skin, ink) -> np.ndarray:
    """Eyes: the white between the lids, then an iris clipped by the lids (wide eyes show
    white above and below it, narrowed eyes cut it off). Brows: slanted, slightly arched bands."""
    eu, ev = au - _col(p["eye_dx"]), v - np.float32(_EYE_V)
    half_height = np.float32(_EYE_HALF_HEIGHT) * _col(p["eye_open"])
    lids = _inside(_ellipse_q(eu, ev, np.float32(_EYE_HALF_WIDTH), half_height), 1.0, half_height * px * 0.5)
    image = _over(image, np.minimum(skin + 0.15, 1.0), lids)
    iris = _inside(eu * eu + ev * ev, np.float32(_IRIS_RADIUS**2), px / np.float32(2.0 * _IRIS_RADIUS))
    image = _over(image, ink * 0.6, iris * lids)
    mid_v, slope = (_col(x) for x in _brow_line(p))
    along = au - np.float32(_BROW_CENTRE)
    across = np.abs(v - (mid_v + along * (slope + np.float32(_BROW_ARCH) * along)))
    ends = np.abs(along) - np.float32(_BROW_HALF_LENGTH - _BROW_HALF_WIDTH)
    brows = _inside(np.maximum(across, ends), np.float32(_BROW_HALF_WIDTH), px)
    return _over(image, ink, brows)


def _nostrils_box(px: np.ndarray) -> tuple[np.ndarray, ...]:
    """Face-space extent of the nostrils, anti-aliasing halo included."""
    halo = _halo(_NOSTRIL_RY, px)
    return _NOSTRIL_U + _NOSTRIL_RX * halo, _NOSTRIL_V - _NOSTRIL_RY * halo, _NOSTRIL_V + _NOSTRIL_RY * halo


def _draw_nostrils(image, u, au, v, px, p, skin, ink) -> np.ndarray:
    """Two small dark nostrils: enough of a nose to anchor the face."""
    q = _ellipse_q(au - np.float32(_NOSTRIL_U), v - np.float32(_NOSTRIL_V), _NOSTRIL_RX, _NOSTRIL_RY)
    return _over(image, skin * 0.55, _inside(q, 1.0, px * np.float32(_NOSTRIL_RY / 2.0)))


def _mouth_cubic(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients c1, c2, c3 of the mouth centre line _MOUTH_V + c1 t + c2 t^2 + c3 t^3.

    curve lifts both corners (t^2), smirk lifts one corner, (t^2 + side * t) / 2, and wave
    adds an S-bend, t - t^3. v points down, so a lift is negative.
    """
    smirk, wave = p["smirk"], 5.2 * p["wave"]
    return wave - 0.5 * smirk * p["smirk_side"], -p["curve"] - 0.5 * smirk, -wave


def _mouth_box(p: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Face-space extent of the mouth: |centre - _MOUTH_V| <= |c1| + |c2| + |c3| on |t| <= 1,
    and the lips reach the opening plus the line's half-thickness beyond it."""
    bend = sum(np.abs(c) for c in _mouth_cubic(p))
    upper = p["open"] * (1.0 + p["lip_raise"])
    return p["width"] + _LIP, _MOUTH_V - bend - upper - _LIP, _MOUTH_V + bend + p["open"] + _LIP


def _draw_mouth(image, u, au, v, px, p, skin, ink) -> np.ndarray:
    """Mouth as the band between two lip curves around the bent centre line.

    Along the mouth t = u / width in [-1, 1]. The opening is elliptic, open * sqrt(1 - t^2),
    with the upper lip moved further by lip_raise; a closed mouth is a line 2 * _LIP thick.
    """
    width = _col(p["width"])
    c1, c2, c3 = (_col(c) for c in _mouth_cubic(p))
    t = np.clip(u * (1.0 / width), -1.0, 1.0)
    centre = np.float32(_MOUTH_V) + t * (c1 + t * (c2 + c3 * t))
    root = np.sqrt(1.0 - t * t)
    lower = _col(p["open"])
    upper = lower * (1.0 + _col(p["lip_raise"]))
    across = np.abs((v - centre) - root * (0.5 * (lower - upper))) - root * (0.5 * (lower + upper))
    return _over(image, ink, _inside(np.maximum(across, au - width), np.float32(_LIP), px))


def _photometry(image, p, noise, size) -> np.ndarray:
    """Occluder, lighting gradient and sensor noise, all in image coordinates."""
    axis = _pixel_axis(size)
    x, y = axis[None, None, :], axis[None, :, None]
    hit = np.flatnonzero(p["occluded"])
    if hit.size:  # rare, so drawn only on the examples that have one
        q = (x - _col(p["occ_x"][hit])) ** 2 + (y - _col(p["occ_y"][hit])) ** 2
        radius = _col(p["occ_r"][hit])
        blob = _inside(q, radius * radius, np.float32(size / 4.0) / radius)
        image[hit] = _over(image[hit], _col(p["occ_level"][hit]), blob)
    image = image * (1.0 + (_col(p["light_x"]) * x + _col(p["light_y"]) * y))
    return image + _col(p["noise_std"]) * noise
