"""tools/study.py's statistics: paired differences by seed, bootstrap intervals, the run fingerprint."""

import numpy as np
import pytest

from tools import study


def _record(family, variant, seed, target, in_domain):
    results = {
        "gtav:/x/clay_lowpoly_val": {"mIoU": in_domain},
        "cityscapes:/x/dusk": {"mIoU": target},
        "bdd100k:/x/haze": {"mIoU": target + 2.0},
    }
    return {"family": family, "variant": variant, "seed": seed, "history": [{"step": 3000, "results": results}]}


def test_final_scores_separate_held_out_source_images_from_targets():
    scores = study.final_scores(_record("towns", "mgml", 0, target=10.0, in_domain=40.0))
    assert scores["in_domain"] == 40.0
    assert scores["target"] == 11.0  # mean of 10 and 12, the held-out source style excluded


def test_paired_differences_match_seeds_and_ignore_unpaired_runs():
    records = [_record("streets", "mgml", s, t, 30.0) for s, t in ((0, 10.0), (1, 12.0), (2, 9.0), (4, 50.0))]
    records += [_record("streets", "baseline", s, t, 31.0) for s, t in ((0, 11.0), (1, 10.0), (2, 9.5), (3, 0.0))]
    records.append(_record("towns", "baseline", 4, 0.0, 0.0))  # another family: never paired
    result = study.paired(records, "streets", "mgml", "baseline", "target")
    assert result["seeds"] == [0, 1, 2]
    np.testing.assert_allclose(result["differences"], [-1.0, 2.0, -0.5])
    assert result["mean"] == pytest.approx(0.5 / 3)
    assert result["wins"] == 1
    low, high = result["interval"]
    assert -1.0 <= low <= result["mean"] <= high <= 2.0


def test_bootstrap_interval_against_a_direct_resampling():
    values = np.array([0.3, -1.2, 2.5, 0.9, 1.1])
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, 5, size=(20000, 5))].mean(axis=1)
    expected = np.percentile(means, [2.5, 97.5])
    np.testing.assert_allclose(study.bootstrap_interval(values, 20000, seed=0), expected)
    assert study.bootstrap_interval(values[:2], 1000) is None  # under 3 seeds: no interval
    narrow = study.bootstrap_interval(np.full(5, 1.5), 1000)
    assert narrow == [1.5, 1.5]


def test_fingerprint_ignores_paths_and_follows_flags_and_nested_flagfiles():
    base = study._command("streets", "mgml", 0, "/tmp/a")
    moved = study._command("streets", "mgml", 0, "/elsewhere/b", out_dir="/elsewhere")
    assert study._fingerprint(base) == study._fingerprint(moved)
    assert study._fingerprint(base) != study._fingerprint(study._command("streets", "mgml", 1, "/tmp/a"))
    assert study._fingerprint(base) != study._fingerprint(study._command("towns", "mgml", 0, "/tmp/a"))
    other_config = study._command("streets", "mgml", 0, "/tmp/a", config="configs/demo.cfg")
    assert study._fingerprint(base) != study._fingerprint(other_config)  # the flagfile named in the command
    inlined = study._flagfile_text(study.CONFIG)
    assert "--flagfile=" not in inlined and "--crop_size" in inlined  # demo.cfg's lines inlined


def test_every_exploratory_variant_names_a_known_variant_to_compare_with():
    for name, variant in study.VARIANTS.items():
        if variant.group in study.EXPLORATORY_GROUPS:
            assert variant.against in study.VARIANTS, name


def test_variant_names_are_a_group_or_known_variants():
    assert study.variant_names(["decisive"]) == ["baseline", "memory_agg", "mldg", "mgml"]
    assert study.variant_names(["decisive"], ["mgml_no_cohesion"]) == ["mgml_no_cohesion"]
    with pytest.raises(ValueError, match="unknown variant"):
        study.variant_names(variants=["no_such_variant"])
