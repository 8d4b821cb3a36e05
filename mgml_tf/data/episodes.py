"""Meta-learning episodes, aggregated batches and evaluation data as `tf.data` pipelines.

Every step `t` is a pure function of `(seed, t)`: which domains go to meta-train, which files each domain
contributes (each domain is an endless stream that visits its files in a fresh random order every epoch,
via `tf.random.experimental.index_shuffle`), and every augmentation draw (stateless ops with per-image
seeds). Steps are produced by a parallel `map` over the step counter, so `deterministic=True` gives the
same batches run to run and `deterministic=False` only lets finished steps overtake slower ones.

Replica layout: a half with `n` domains of `B` images is ordered [replica, domain, image], so that
`experimental_distribute_dataset` (which splits a batch contiguously into `num_replicas` parts) gives each
replica `B / num_replicas` images of every domain in that half.
"""

from __future__ import annotations

from collections.abc import Iterable

import tensorflow as tf

from mgml_tf.data import augment as A
from mgml_tf.data.datasets import DataError, Domain, load_domain, parse_domains

AUTOTUNE = tf.data.AUTOTUNE

#: Source domains as ``episodes`` and ``aggregated_batches`` take them: one ``Domain`` or "name:root" string
#: (a comma list of them), or an iterable of ``Domain``s, strings and ``(name, root)`` pairs.
DomainsLike = Domain | str | Iterable[Domain | str | tuple[str, str]]

# Tags that separate the random streams derived from the user seed.
_TAG_SPLIT, _TAG_ORDER, _TAG_AUG = 0x5B117, 0x0BDE2, 0xA06E3


class EpisodeError(DataError, ValueError):
    """Invalid episode or batch configuration (e.g. batch not divisible by the replica count)."""


def _domains(domains):
    if isinstance(domains, (Domain, str)):
        domains = [domains]
    out = []
    for d in domains:
        if isinstance(d, Domain):
            out.append(d)
        elif isinstance(d, str):
            out.extend(parse_domains(d))
        elif isinstance(d, (tuple, list)) and len(d) == 2:
            out.append(load_domain(*d))
        else:
            raise EpisodeError(f"expected a Domain or 'name:root' string, got {d!r}")
    if not out:
        raise EpisodeError("no source domains given; pass at least one Domain (see mgml_tf.data.load_domain)")
    return out


def _check(batch_per_domain, crop_size, num_replicas):
    if int(batch_per_domain) < 1:
        raise EpisodeError(f"batch_per_domain must be >= 1, got {batch_per_domain}")
    if int(num_replicas) < 1:
        raise EpisodeError(f"num_replicas must be >= 1, got {num_replicas}")
    if batch_per_domain % num_replicas:
        raise EpisodeError(
            f"batch_per_domain={batch_per_domain} is not divisible by num_replicas={num_replicas}; every "
            "replica needs the same number of images of each domain: use a multiple of the replica count"
        )
    h, w = A._pair(crop_size)
    if h < 1 or w < 1:
        raise EpisodeError(f"crop_size must be positive, got {crop_size}")
    return h, w


def _root_seed(seed, tag):
    base = tf.constant([int(seed) & 0x7FFFFFFFFFFFFFFF, 0], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tag)


def _fold(seed, *data):
    for x in data:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(x, tf.int64))
    return seed


def _sample_indices(seed, slot, step, batch, size):
    """File indices [batch] of one domain stream at `step`: a new permutation per epoch of the files."""
    n = step * batch + tf.range(batch, dtype=tf.int64)
    epoch, pos = n // size, n % size
    slot_seed = _fold(_root_seed(seed, _TAG_ORDER), slot)
    seeds = tf.stack([tf.fill([batch], slot_seed[0]), tf.fill([batch], slot_seed[1]), epoch], axis=1)
    return tf.raw_ops.RandomIndexShuffle(index=pos, seed=seeds, max_index=tf.constant(size - 1, tf.int64), rounds=4)


def split_domains(seed, step, num_domains):
    """(order, k): a permutation of the domain slots and the meta-train count k ~ U{1..D-1} at `step`.

    The first k slots of `order` are meta-train, the rest meta-test. Pure function of (seed, step).
    """
    s = _fold(_root_seed(seed, _TAG_SPLIT), step)
    parts = tf.random.experimental.stateless_split(s, 2)
    order = tf.argsort(tf.random.stateless_uniform([num_domains], parts[0]))
    u = tf.random.stateless_uniform([], parts[1])
    k = 1 + tf.cast(tf.floor(u * (num_domains - 1)), tf.int32)
    return order, tf.clip_by_value(k, 1, num_domains - 1)


def _replica_layout(x, num_replicas):
    """[n, B, ...] -> [n * B, ...] ordered [replica, domain, image]."""
    if num_replicas == 1:
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))
    shape = tf.shape(x)
    n, b = shape[0], shape[1]
    x = tf.reshape(x, tf.concat([[n, num_replicas, b // num_replicas], shape[2:]], 0))
    rank = len(x.shape)
    x = tf.transpose(x, [1, 0] + list(range(2, rank)))
    return tf.reshape(x, tf.concat([[-1], shape[2:]], 0))


def _any_batch(x):
    """The same tensor with its leading dimension declared unknown (meta-train size varies per step)."""
    return tf.compat.v1.placeholder_with_default(x, [None] + x.shape.as_list()[1:])


def _slot_batch(domain, slot, step, seed, batch, crop, strong, config, strong_config):
    """[B, h, w, 3] float32 images and [B, h, w] int32 labels of one domain stream at `step`."""
    idx = _sample_indices(seed, slot, step, batch, len(domain))
    image_paths = tf.gather(tf.constant(domain.image_paths), idx)
    label_paths = tf.gather(tf.constant(domain.label_paths), idx)
    aug_seeds = tf.random.experimental.stateless_split(_fold(_root_seed(seed, _TAG_AUG), slot, step), batch)
    h, w = crop

    def one(args):
        ip, lp, s = args
        image, raw = domain.read_raw(ip, lp)  # map labels after cropping: fewer pixels
        return A.augment(
            image, raw, s, crop, strong=strong, config=config, strong_config=strong_config, label_map=domain.label_map
        )

    return tf.map_fn(
        one,
        (image_paths, label_paths, aug_seeds),
        parallel_iterations=batch,
        fn_output_signature=(tf.TensorSpec([h, w, 3], tf.float32), tf.TensorSpec([h, w], tf.int32)),
    )


def episodes(
    domains: DomainsLike,
    batch_per_domain: int,
    crop_size: int | tuple[int, int],
    seed: int = 0,
    deterministic: bool = False,
    num_replicas: int = 1,
    strong_meta_test: bool | None = None,
    augment_config: A.AugmentConfig | None = None,
    strong_config: A.AugmentConfig | None = None,
    num_parallel_calls: int = AUTOTUNE,
    prefetch: int | None = 2,
    start_step: int = 0,
) -> tf.data.Dataset:
    """Endless meta-learning episodes: ((images_tr, labels_tr), (images_te, labels_te)) per step.

    Args:
      domains: the D source domains (`Domain` objects or "name:root" strings).
      batch_per_domain: B images of every domain per step.
      crop_size: int or (h, w) training crop.
      seed: integer; the whole stream (splits, file order, augmentation) is a function of it.
      deterministic: fixed step order (identical batches run to run with the same seed).
      num_replicas: R; B must be divisible by R; each half is laid out [replica, domain, image].
      strong_meta_test: give meta-test images the strong jitter + blur. Default: True exactly when D == 1
        (single source: the domain is duplicated; the copy used for meta-test is strongly augmented, the
        paper's rule).
      augment_config / strong_config: `mgml_tf.data.augment.AugmentConfig` (defaults DEFAULT / STRONG).
      num_parallel_calls: parallel steps in flight (each step decodes and augments D*B images).
      prefetch: steps prefetched (None: no prefetch).
      start_step: first step produced; the stream from step t on is the same whatever the start, so a
        resumed run continues exactly where it stopped (no replay).

    Images are float32 [n*B, h, w, 3] in 0..255 RGB, labels int32 [n*B, h, w] (255 ignore), where
    n = k meta-train domains (k ~ uniform 1..D-1 per step) or D - k meta-test domains; the leading
    dimension is None in `element_spec`.
    """
    doms = _domains(domains)
    crop = _check(batch_per_domain, crop_size, num_replicas)
    single = len(doms) == 1
    slots = [doms[0], doms[0]] if single else doms
    strong_test = single if strong_meta_test is None else bool(strong_meta_test)
    num_slots, batch = len(slots), int(batch_per_domain)

    def step_fn(step):
        if single:
            order = tf.constant([0, 1], tf.int32)
            k = tf.constant(1, tf.int32)
        else:
            order, k = split_domains(seed, step, num_slots)
        position = tf.scatter_nd(order[:, None], tf.range(num_slots), [num_slots])  # slot -> rank
        images, labels = [], []
        for s, dom in enumerate(slots):
            strong = tf.logical_and(tf.constant(strong_test), position[s] >= k)
            im, lb = _slot_batch(dom, s, step, seed, batch, crop, strong, augment_config, strong_config)
            images.append(im)
            labels.append(lb)
        images = tf.gather(tf.stack(images), order)
        labels = tf.gather(tf.stack(labels), order)
        tr = (
            _any_batch(_replica_layout(images[:k], num_replicas)),
            _any_batch(_replica_layout(labels[:k], num_replicas)),
        )
        te = (
            _any_batch(_replica_layout(images[k:], num_replicas)),
            _any_batch(_replica_layout(labels[k:], num_replicas)),
        )
        return tr, te

    ds = tf.data.Dataset.counter(start=int(start_step), dtype=tf.int64)
    ds = ds.map(step_fn, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return ds.prefetch(prefetch) if prefetch else ds


def aggregated_batches(
    domains: DomainsLike,
    batch_per_domain: int,
    crop_size: int | tuple[int, int],
    seed: int = 0,
    deterministic: bool = False,
    num_replicas: int = 1,
    augment_config: A.AugmentConfig | None = None,
    num_parallel_calls: int = AUTOTUNE,
    prefetch: int | None = 2,
    start_step: int = 0,
) -> tf.data.Dataset:
    """Endless (images, labels) batches with B images of every domain (the `baseline` method).

    Same streams, augmentation, replica layout ([replica, domain, image] order) and `start_step` as
    `episodes`;
    images float32 [D*B, h, w, 3], labels int32 [D*B, h, w].
    """
    doms = _domains(domains)
    crop = _check(batch_per_domain, crop_size, num_replicas)
    batch = int(batch_per_domain)

    def step_fn(step):
        images, labels = [], []
        for s, dom in enumerate(doms):
            im, lb = _slot_batch(dom, s, step, seed, batch, crop, False, augment_config, None)
            images.append(im)
            labels.append(lb)
        return (_replica_layout(tf.stack(images), num_replicas), _replica_layout(tf.stack(labels), num_replicas))

    ds = tf.data.Dataset.counter(start=int(start_step), dtype=tf.int64)
    ds = ds.map(step_fn, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return ds.prefetch(prefetch) if prefetch else ds


def _resize_height(image, label, height):
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    width = tf.maximum(tf.cast(tf.round(w * height / h), tf.int32), 1)
    size = tf.stack([height, width])
    image = tf.image.resize(image, size, method="bilinear")
    label = tf.image.resize(label[..., None], size, method="nearest")[..., 0]
    return image, label


def _center_crop(image, label, size):
    ch, cw = A._pair(size)
    image = tf.image.resize_with_crop_or_pad(image, ch, cw)  # pads with 0
    # pad the label with 255: shift so that the ignore value is 0 while padding
    label = tf.image.resize_with_crop_or_pad((label - 255)[..., None], ch, cw)[..., 0] + 255
    return image, label


def evaluation_dataset(domain, batch_size=1, num_parallel_calls=AUTOTUNE, resize_height=None, center_crop=None):
    """Unaugmented (float32 image [b,H,W,3] 0..255, int32 label [b,H,W]) in file order.

    Full resolution by default. `resize_height` rescales each image to that height (image bilinear,
    label nearest, aspect kept) and `center_crop` (int or (h, w)) then crops the centre, padding image 0 /
    label 255 where the image is smaller: the reference protocol for Mapillary is
    `resize_height=1536, center_crop=1536`.

    `domain` is a `Domain` or a "name:root" string (read with split="val"). Images of different sizes in
    one batch are padded (image 0, label 255, so padding is ignored by the metric).
    """
    if isinstance(domain, str):
        [domain] = parse_domains(domain, split="val")
    if int(batch_size) < 1:
        raise EpisodeError(f"batch_size must be >= 1, got {batch_size}")

    def prepare(image, label):
        image, label = tf.cast(image, tf.float32), tf.cast(label, tf.int32)
        if resize_height:
            image, label = _resize_height(image, label, int(resize_height))
        if center_crop:
            image, label = _center_crop(image, label, center_crop)
        return image, label

    ds = domain.as_dataset(num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.map(prepare, num_parallel_calls=num_parallel_calls)
    ds = ds.padded_batch(int(batch_size), padding_values=(0.0, 255))
    return ds.prefetch(1)
