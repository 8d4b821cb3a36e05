"""Episodes, aggregated batches and evaluation data on tiny IDD-layout trees (labels = train ids)."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf

import mgml_tf.data as data
from mgml_tf.data import augment as A
from mgml_tf.data import episodes as E

COLOURS = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (200, 200, 30)]
CROP = 16
GEOM = A.GEOMETRY_ONLY


def episodes(*args, **kw):
    """`E.episodes` without background work beyond what a test takes (tests run on shared cores)."""
    kw.setdefault("num_parallel_calls", 1)
    kw.setdefault("prefetch", None)
    return E.episodes(*args, **kw)


def aggregated_batches(*args, **kw):
    kw.setdefault("num_parallel_calls", 1)
    kw.setdefault("prefetch", None)
    return E.aggregated_batches(*args, **kw)


def make_domain(root, domain_id, files=3, size=(24, 32), label_of_file=False):
    """IDD layout; image: the domain's constant colour; label: the domain id (or the file index)."""
    for i in range(files):
        frame = f"{i:06d}"
        img = np.zeros(size + (3,), np.uint8) + np.array(COLOURS[domain_id], np.uint8)
        lab = np.full(size + (1,), i if label_of_file else domain_id, np.uint8)
        for path, arr in [
            (f"{root}/leftImg8bit/train/0/{frame}_leftImg8bit.png", img),
            (f"{root}/gtFine/train/0/{frame}_gtFine_labelcsTrainIds.png", lab),
        ]:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(tf.io.encode_png(arr).numpy())
    return data.load_domain("idd", root)


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    base = tmp_path_factory.mktemp("episodes")
    return [make_domain(str(base / f"d{d}"), d) for d in range(3)]


def domain_of(label):
    """The domain id an augmented image came from (its label is the id, or 255 for padding)."""
    vals = set(np.unique(label).tolist()) - {255}
    assert len(vals) == 1, vals
    return vals.pop()


def take(ds, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), x) for x in ds.take(n)]


def test_element_spec_and_split_sizes(domains):
    B = 2
    ds = episodes(domains, B, CROP, seed=0, deterministic=True, augment_config=GEOM)
    (tr_spec, tr_lspec), (te_spec, te_lspec) = ds.element_spec
    assert tr_spec.shape.as_list() == [None, CROP, CROP, 3] and tr_spec.dtype == tf.float32
    assert te_lspec.shape.as_list() == [None, CROP, CROP] and te_lspec.dtype == tf.int32
    ks = collections.Counter()
    for (xi, xl), (yi, yl) in take(ds, 16):
        assert xi.shape[0] % B == 0 and yi.shape[0] % B == 0
        k = xi.shape[0] // B
        assert 1 <= k <= 2 and yi.shape[0] == (3 - k) * B
        ks[k] += 1
        tr = [domain_of(l) for l in xl]
        te = [domain_of(l) for l in yl]
        # B images of each domain, every domain exactly once across the halves
        assert sorted(collections.Counter(tr).values()) == [B] * k
        assert set(tr).isdisjoint(te) and set(tr) | set(te) == {0, 1, 2}
        # images are the domain colour (geometry-only augmentation) or padding
        for img, lab in zip(np.concatenate([xi, yi]), np.concatenate([xl, yl])):
            d = domain_of(lab)
            np.testing.assert_allclose(img[lab != 255], np.broadcast_to(COLOURS[d], img[lab != 255].shape), atol=1e-3)
            assert (img[lab == 255] == 0).all()
    assert set(ks) == {1, 2}


def test_split_matches_split_domains(domains):
    ds = episodes(domains, 1, CROP, seed=5, deterministic=True, augment_config=GEOM)
    for t, ((_, xl), (_, yl)) in enumerate(take(ds, 6)):
        order, k = E.split_domains(5, tf.constant(t, tf.int64), 3)
        order, k = order.numpy().tolist(), int(k)
        assert [domain_of(l) for l in xl] == order[:k]
        assert [domain_of(l) for l in yl] == order[k:]


def test_deterministic_with_seed(domains):
    def first(seed):
        return take(episodes(domains, 2, CROP, seed=seed, deterministic=True), 3)

    a, b, c = first(7), first(7), first(8)
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
        np.testing.assert_array_equal(x, y)
    assert any(x.shape != y.shape or not np.array_equal(x, y) for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(c)))


def test_start_step_resumes_the_stream(domains):
    full = take(episodes(domains, 1, CROP, seed=9, deterministic=True), 3)
    resumed = take(episodes(domains, 1, CROP, seed=9, deterministic=True, start_step=2), 1)
    for x, y in zip(tf.nest.flatten(full[2]), tf.nest.flatten(resumed[0])):
        np.testing.assert_array_equal(x, y)
    agg = take(aggregated_batches(domains, 1, CROP, seed=9, deterministic=True), 2)
    agg_resumed = take(aggregated_batches(domains, 1, CROP, seed=9, deterministic=True, start_step=1), 1)
    np.testing.assert_array_equal(agg[1][0], agg_resumed[0][0])


def test_non_deterministic_gives_the_same_steps(domains):
    ref = take(episodes(domains, 1, CROP, seed=2, deterministic=True), 4)
    # finished steps may overtake slower ones, by at most the number in flight
    got = take(episodes(domains, 1, CROP, seed=2, deterministic=False, num_parallel_calls=2), 10)

    def key(step):
        return tf.nest.flatten(step)[0].tobytes()

    assert set(map(key, ref)) <= set(map(key, got))


def test_single_source_duplicates_and_strong_meta_test(domains):
    B = 2
    ds = episodes(domains[:1], B, CROP, seed=1, deterministic=True, augment_config=GEOM)
    assert ds.element_spec[0][0].shape.as_list() == [None, CROP, CROP, 3]
    colour = np.array(COLOURS[0], np.float32)
    for (xi, xl), (yi, yl) in take(ds, 4):
        assert xi.shape[0] == B and yi.shape[0] == B
        assert {domain_of(l) for l in np.concatenate([xl, yl])} == {0}
        valid_tr, valid_te = xl != 255, yl != 255
        np.testing.assert_allclose(xi[valid_tr], np.broadcast_to(colour, xi[valid_tr].shape), atol=1e-3)
        # meta-test: strong jitter + blur always, so the colour moves away from the source colour
        assert np.abs(yi[valid_te] - colour).mean() > 5.0
    # the rule can be switched off, and switched on for several sources
    plain = episodes(domains[:1], B, CROP, seed=1, deterministic=True, augment_config=GEOM, strong_meta_test=False)
    for _, (yi, yl) in take(plain, 2):
        np.testing.assert_allclose(yi[yl != 255], np.broadcast_to(colour, yi[yl != 255].shape), atol=1e-3)
    multi = episodes(domains, B, CROP, seed=1, deterministic=True, augment_config=GEOM, strong_meta_test=True)
    for (xi, xl), (yi, yl) in take(multi, 2):
        for img, lab in zip(xi, xl):
            c = np.array(COLOURS[domain_of(lab)], np.float32)
            np.testing.assert_allclose(img[lab != 255], np.broadcast_to(c, img[lab != 255].shape), atol=1e-3)
        for img, lab in zip(yi, yl):
            c = np.array(COLOURS[domain_of(lab)], np.float32)
            assert np.abs(img[lab != 255] - c).mean() > 5.0


def test_replica_layout(domains):
    B, R = 4, 2
    ds = episodes(domains, B, CROP, seed=3, deterministic=True, num_replicas=R, augment_config=GEOM)
    seen_k2 = False
    for t, ((_, xl), (_, yl)) in enumerate(take(ds, 8)):
        order, k = E.split_domains(3, tf.constant(t, tf.int64), 3)
        order, k = order.numpy().tolist(), int(k)
        seen_k2 |= k == 2
        for half, doms in ((xl, order[:k]), (yl, order[k:])):
            ids = [domain_of(l) for l in half]
            chunks = np.split(np.array(ids), R)  # what experimental_distribute_dataset hands each replica
            for chunk in chunks:
                # [replica, domain, image]: B/R images of every domain of the half, in split order
                assert chunk.tolist() == [d for d in doms for _ in range(B // R)]
    assert seen_k2


def test_batch_not_divisible_by_replicas(domains):
    with pytest.raises(E.EpisodeError, match="not divisible by num_replicas=4"):
        episodes(domains, 6, CROP, num_replicas=4)
    with pytest.raises(data.DataError):
        aggregated_batches(domains, 3, CROP, num_replicas=2)
    assert isinstance(E.EpisodeError("x"), ValueError)


def test_aggregated_batches(domains):
    B, R = 2, 2
    ds = aggregated_batches(domains, B, CROP, seed=0, deterministic=True, num_replicas=R, augment_config=GEOM)
    assert ds.element_spec[0].shape.as_list()[1:] == [CROP, CROP, 3]
    for imgs, labs in take(ds, 3):
        assert imgs.shape == (3 * B, CROP, CROP, 3) and labs.dtype == np.int32
        ids = [domain_of(l) for l in labs]
        for chunk in np.split(np.array(ids), R):
            assert chunk.tolist() == [0, 1, 2]


def test_each_epoch_visits_every_file(tmp_path):
    dom = make_domain(str(tmp_path / "one"), 0, files=5, label_of_file=True)
    ds = aggregated_batches([dom], 3, CROP, seed=4, deterministic=True, augment_config=GEOM)
    seq = [domain_of(l) for _, labs in take(ds, 5) for l in labs]  # 15 draws = 3 epochs of 5 files
    epochs = [seq[i : i + 5] for i in range(0, 15, 5)]
    assert all(sorted(e) == [0, 1, 2, 3, 4] for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1  # a fresh order per epoch


def test_domains_as_strings(domains):
    spec = f"idd:{domains[0].root},idd:{domains[1].root}"
    (xi, _), (yi, _) = next(iter(episodes(spec, 1, CROP, seed=0)))
    assert xi.shape[0] + yi.shape[0] == 2


def test_evaluation_dataset(tmp_path, domains):
    ds = E.evaluation_dataset(domains[0])
    assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.int32
    batches = take(ds, 10)
    assert len(batches) == 3
    img, lab = batches[0]
    assert img.shape == (1, 24, 32, 3) and lab.shape == (1, 24, 32)
    np.testing.assert_array_equal(img[0, 0, 0], COLOURS[0])
    assert (lab == 0).all()
    # different sizes in one batch: padded with 0 / 255
    root = str(tmp_path / "mixed")
    make_domain(root, 1, files=1, size=(10, 12))
    os.rename(
        f"{root}/leftImg8bit/train/0/000000_leftImg8bit.png", f"{root}/leftImg8bit/train/0/000009_leftImg8bit.png"
    )
    os.rename(
        f"{root}/gtFine/train/0/000000_gtFine_labelcsTrainIds.png",
        f"{root}/gtFine/train/0/000009_gtFine_labelcsTrainIds.png",
    )
    make_domain(root, 1, files=1, size=(8, 14))
    [(img, lab)] = take(E.evaluation_dataset(data.load_domain("idd", root), batch_size=2), 1)
    assert img.shape == (2, 10, 14, 3)
    # file order: 000000 (8x14) then 000009 (10x12)
    assert (lab[0, 8:] == 255).all() and (img[0, 8:] == 0).all() and (lab[0, :8] == 1).all()
    assert (lab[1, :, 12:] == 255).all() and (lab[1, :, :12] == 1).all()


def test_evaluation_resize_height_and_center_crop(tmp_path):
    root = str(tmp_path / "wide")
    dom = make_domain(root, 2, files=1, size=(20, 60))
    [(img, lab)] = take(E.evaluation_dataset(dom, resize_height=10), 1)
    assert img.shape == (1, 10, 30, 3) and (lab == 2).all()
    np.testing.assert_allclose(img[0, 5, 5], COLOURS[2], atol=1e-3)
    [(img, lab)] = take(E.evaluation_dataset(dom, resize_height=10, center_crop=(14, 12)), 1)
    assert img.shape == (1, 14, 12, 3)
    assert (lab[0, 2:12] == 2).all() and (lab[0, :2] == 255).all() and (lab[0, 12:] == 255).all()
    assert (img[0, :2] == 0).all()
