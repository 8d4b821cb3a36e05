"""Joint image/label training augmentation (appendix B.1), in TF ops, reproducible from a seed.

Every random draw is a stateless op keyed by the per-element `seed` (a [2] integer tensor), so the
result depends only on (image, label, seed): identical under parallel or non-deterministic `tf.data` maps.

Order: random scale (0.5-2; image bilinear, label nearest) and random crop, done together by one
`tf.image.crop_and_resize` that samples only the output window (the scaled image is never materialised);
pad to the crop size when the scaled image is smaller (image 0, label 255, at a random offset); horizontal
flip; colour jitter with probability `jitter_prob` (brightness, contrast, saturation, hue in that fixed
order, torchvision's definitions); Gaussian blur with probability `blur_prob` (random sigma, separable
convolution with symmetric padding). The strong variant (single-source meta-test) uses jitter
(.8, .8, .8, .3) and blur, both always.
"""

import dataclasses
import math

import tensorflow as tf

from mgml_tf.data.labels import IGNORE_ID


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Parameters of `augment`. `jitter` = (brightness, contrast, saturation, hue) strengths."""

    scale_range: tuple = (0.5, 2.0)
    flip: bool = True
    jitter: tuple = (0.4, 0.4, 0.4, 0.1)
    jitter_prob: float = 0.5
    blur_prob: float = 0.5
    blur_sigma: tuple = (0.15, 1.3)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


DEFAULT = AugmentConfig()
STRONG = AugmentConfig(jitter=(0.8, 0.8, 0.8, 0.3), jitter_prob=1.0, blur_prob=1.0)
#: No photometric change (geometry only): useful for tests and for debugging pipelines.
GEOMETRY_ONLY = AugmentConfig(jitter_prob=0.0, blur_prob=0.0)


def _pair(size):
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _uniform(seed, lo=0.0, hi=1.0):
    return tf.random.stateless_uniform([], seed, minval=lo, maxval=hi, dtype=tf.float32)


def _randint(seed, n):
    """Uniform integer in [0, n) for an int32 scalar n >= 1."""
    u = _uniform(seed)
    return tf.minimum(tf.cast(tf.floor(u * tf.cast(n, tf.float32)), tf.int32), n - 1)


def scale_crop(image, label, seed, crop_size, scale_range=(0.5, 2.0), flip=True, label_map=None):
    """Random scale, crop (padding image 0 / label 255) and flip.

    Args: image [H, W, C] (any real dtype), label [H, W] integer train ids, seed [2] int tensor.
      With `label_map`, `label` is the label as stored ([H, W, K], e.g. colours) and
      `label_map(crop) -> [h, w] train ids` is applied to the (nearest-sampled) crop before padding.
    Returns: float32 image [h, w, C] (same value range as the input), int32 label [h, w].
    """
    ch, cw = _pair(crop_size)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    s = _uniform(seeds[0], float(scale_range[0]), float(scale_range[1]))
    hs = tf.maximum(tf.cast(tf.round(tf.cast(h, tf.float32) * s), tf.int32), 1)
    ws = tf.maximum(tf.cast(tf.round(tf.cast(w, tf.float32) * s), tf.int32), 1)
    out_h, out_w = tf.minimum(ch, hs), tf.minimum(cw, ws)
    y0 = _randint(seeds[1], hs - out_h + 1)
    x0 = _randint(seeds[2], ws - out_w + 1)
    # Scaled pixel j samples source pixel j * (H-1)/(Hs-1) (corners aligned), shrunk by 1e-5 so that
    # float error never pushes the last row/column out of range (crop_and_resize would extrapolate).
    shrink = 1.0 - 1e-5
    fy = shrink / tf.cast(tf.maximum(hs - 1, 1), tf.float32)
    fx = shrink / tf.cast(tf.maximum(ws - 1, 1), tf.float32)
    box = tf.stack(
        [
            tf.cast(y0, tf.float32) * fy,
            tf.cast(x0, tf.float32) * fx,
            tf.cast(y0 + out_h - 1, tf.float32) * fy,
            tf.cast(x0 + out_w - 1, tf.float32) * fx,
        ]
    )[None]
    size = tf.stack([out_h, out_w])
    img = tf.image.crop_and_resize(image[None], box, [0], size, method="bilinear")[0]
    if label_map is None:
        lab = tf.image.crop_and_resize(label[None, :, :, None], box, [0], size, method="nearest")[0, :, :, 0]
    else:
        raw = tf.image.crop_and_resize(label[None], box, [0], size, method="nearest")[0]
        lab = label_map(tf.cast(raw, label.dtype))
    lab = tf.cast(lab, tf.int32)
    py = _randint(seeds[3], ch - out_h + 1)
    px = _randint(seeds[4], cw - out_w + 1)
    pads = [[py, ch - out_h - py], [px, cw - out_w - px]]
    img = tf.pad(img, pads + [[0, 0]], constant_values=0.0)
    lab = tf.pad(lab, pads, constant_values=IGNORE_ID)
    if flip:
        do_flip = _uniform(seeds[5]) < 0.5
        img = tf.cond(do_flip, lambda: tf.reverse(img, [1]), lambda: img)
        lab = tf.cond(do_flip, lambda: tf.reverse(lab, [1]), lambda: lab)
    img.set_shape([ch, cw, image.shape[-1]])
    lab.set_shape([ch, cw])
    return img, lab


def _grey(image01):
    return tf.reduce_sum(image01 * tf.constant([0.299, 0.587, 0.114], image01.dtype), -1, keepdims=True)


def color_jitter(image01, seed, brightness, contrast, saturation, hue):
    """torchvision-style colour jitter of a float image in [0, 1]; strengths may be tensors.

    Factors: brightness, contrast, saturation ~ U(max(0, 1-x), 1+x) (contrast blends with the mean grey
    level, saturation with the grey image); hue shift ~ U(-hue, hue) of the colour circle.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)

    def factor(i, x):
        x = tf.cast(x, tf.float32)
        return _uniform(seeds[i], tf.maximum(0.0, 1.0 - x), 1.0 + x)

    img = tf.clip_by_value(image01 * factor(0, brightness), 0.0, 1.0)
    mean = tf.reduce_mean(_grey(img))
    img = tf.clip_by_value(mean + factor(1, contrast) * (img - mean), 0.0, 1.0)
    grey = _grey(img)
    img = tf.clip_by_value(grey + factor(2, saturation) * (img - grey), 0.0, 1.0)
    hue = tf.cast(hue, tf.float32)
    delta = _uniform(seeds[3], -1.0, 1.0) * hue
    return tf.clip_by_value(tf.image.adjust_hue(img, delta), 0.0, 1.0)


def gaussian_blur(image, sigma, radius):
    """Separable Gaussian blur of [H, W, C] float with a (2 radius + 1)-tap kernel of std `sigma`."""
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigma = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)
    k = tf.exp(-0.5 * tf.square(x / sigma))
    k = k / tf.reduce_sum(k)
    c = image.shape[-1]
    img = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    ky = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, c, 1])
    kx = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, c, 1])
    img = tf.nn.depthwise_conv2d(img, ky, [1, 1, 1, 1], "VALID")
    img = tf.nn.depthwise_conv2d(img, kx, [1, 1, 1, 1], "VALID")
    return img[0]


def photometric(image255, seed, config=DEFAULT, strong=False, strong_config=STRONG):
    """Colour jitter and blur of a float image in 0..255; `strong` (bool or bool tensor) selects
    `strong_config`'s jitter strengths and probabilities."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    strong = tf.cast(strong, tf.bool)

    def pick(a, b):
        return tf.where(strong, tf.constant(float(b)), tf.constant(float(a)))

    b, c, s, h = (pick(x, y) for x, y in zip(config.jitter, strong_config.jitter))
    p_jitter = pick(config.jitter_prob, strong_config.jitter_prob)
    p_blur = pick(config.blur_prob, strong_config.blur_prob)
    s_lo = pick(config.blur_sigma[0], strong_config.blur_sigma[0])
    s_hi = pick(config.blur_sigma[1], strong_config.blur_sigma[1])
    radius = max(1, int(math.ceil(3.0 * max(config.blur_sigma[1], strong_config.blur_sigma[1]))))
    img = image255 / 255.0
    img = tf.cond(_uniform(seeds[0]) < p_jitter, lambda: color_jitter(img, seeds[1], b, c, s, h), lambda: img)
    sigma = s_lo + (s_hi - s_lo) * _uniform(seeds[2])
    img = tf.cond(_uniform(seeds[3]) < p_blur, lambda: gaussian_blur(img, sigma, radius), lambda: img)
    return img * 255.0


def augment(image, label, seed, crop_size, strong=False, config=None, strong_config=None, label_map=None):
    """Training augmentation of one pair.

    Args:
      image: [H, W, 3] uint8 (or float in 0..255) RGB.
      label: [H, W] integer train ids (255 ignore).
      seed: [2] integer tensor; equal seeds give equal results.
      crop_size: int or (h, w).
      strong: Python bool or bool tensor: use `strong_config` for the photometric part (single-source
        meta-test images); geometry always follows `config`.
      config / strong_config: `AugmentConfig` (defaults: `DEFAULT`, `STRONG`).
      label_map: optional; then `label` is the label as stored ([H, W, K]) and this function maps the
        crop to train ids (cheaper than mapping the full-resolution label first; same result).
    Returns:
      float32 image [h, w, 3] in 0..255 RGB, int32 label [h, w].
    """
    config = config or DEFAULT
    strong_config = strong_config or STRONG
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    img, lab = scale_crop(image, label, seeds[0], crop_size, config.scale_range, config.flip, label_map)
    img = photometric(img, seeds[1], config, strong, strong_config)
    return img, lab
