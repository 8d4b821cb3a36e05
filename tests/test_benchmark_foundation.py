"""The foundation section of tools.benchmark (tools.benchmark_foundation) on tiny shapes: a tiny random ViT
preset and resnet_small at 32x32, one step each; the record's structure and positive numbers (no timing
assertions), and its Markdown."""

import pytest

from tests.helpers import tiny_vit_preset
from tools import benchmark, benchmark_foundation, machine

HEAD = dict(
    head="deeplabv3plus",
    num_classes=19,
    feature_channels=8,
    decoder_channels=8,
    low_level_channels=4,
    aspp_rates=(1, 2, 3),
)


def test_the_default_matrix_leaves_out_only_what_it_names():
    kept, left_out = benchmark_foundation.cells(
        tuple(benchmark_foundation.ARCHITECTURES),
        tuple(benchmark_foundation.TUNINGS),
        tuple(benchmark_foundation.METHODS),
        "resnet50",
    )
    assert len(kept) + len(left_out) == 2 * 4 * 3 + 3
    assert sorted(c for c in kept if c[0] == "dinov2_base") == [
        ("dinov2_base", t, m) for t in ("full", "lora") for m in ("mgml 1st order", "mgml 2nd order")
    ]
    assert all(c[0] == "dinov2_base" for c in left_out)
    full, none = benchmark_foundation.cells(("dinov2_base",), ("full", "frozen"), ("baseline",), "resnet50", True)
    assert len(full) == 3 and not none


def test_build_options_name_the_preset_tuning_and_method():
    paths = {"vit": "/presets/vit"}
    lora = benchmark_foundation.build_options(("vit", "lora", "mgml 2nd order"), paths, HEAD)
    assert lora == {
        **HEAD,
        "method": "mgml",
        "meta_order": 2,
        "dropout": 0.0,
        "backbone": "/presets/vit",
        "backbone_tuning": "lora",
        "lora_rank": 8,
    }
    adapter = benchmark_foundation.build_options(("vit", "adapter", "baseline"), paths, HEAD)
    assert (adapter["adapter_tokens"], adapter["adapter_rank"], adapter["method"]) == (100, 16, "baseline")
    reference = benchmark_foundation.build_options(("resnet50", "full", "mgml 1st order"), paths, HEAD)
    assert reference["backbone"] == "resnet50" and "backbone_tuning" not in reference


@pytest.mark.slow  # a child process per configuration
def test_the_section_on_a_tiny_vit_records_every_number(tmp_path):
    preset = tiny_vit_preset(tmp_path / "tiny")
    sec = benchmark_foundation.run(
        vits=("tiny",),
        presets={"tiny": preset},
        size=32,
        rounds=1,
        warmup=1,
        memory_steps=1,
        memory_jobs=2,
        reference="resnet_small",
        head=HEAD,
        tunings=("frozen",),
        methods=("baseline",),
        bootstrap=10,
    )
    assert set(sec["configs"]) == {"tiny / frozen / baseline", "resnet_small / full / baseline"}
    assert sec["backbones"]["tiny"]["num_layers"] == 4 and sec["left_out"] == []
    for name, entry in sec["configs"].items():
        assert "failed" not in entry, name
        assert entry["warmup_s"][0] > 0 and entry["step"]["median_s"] > 0 and len(entry["step"]["times_s"]) == 1
        assert entry["step"]["last"]["step_fault"] == 0
        mem = entry["memory"]
        assert "failed" not in mem, mem
        assert mem["peak_rss_mb"] >= mem["rss_before_mb"] > 0 and mem["ru_maxrss_mb"] > 0
        assert entry["ratio_to_reference"]["ratio_of_medians"] > 0
    assert sec["configs"]["resnet_small / full / baseline"]["ratio_to_reference"]["ratio_of_medians"] == 1.0
    params = sec["params"]
    assert set(params) == {"tiny", "resnet_small"} and set(params["tiny"]) == {"frozen"}
    assert params["tiny"]["frozen"]["backbone_trainable"] == 0
    assert 0 < params["resnet_small"]["full"]["backbone_trainable"]
    for by_tuning in params.values():
        for p in by_tuning.values():
            assert p["backbone_trainable"] < p["model_trainable"] < p["model_total"]

    record = {
        **sec,
        "command": "test",
        "started": "start",
        "finished": "end",
        "machine": machine.describe(),
        "load": {"min": 0, "median": 0, "max": 0, "samples": 1, "interval_s": 5},
    }
    text = benchmark.render({"sections": {"foundation": record}})
    assert "## Foundation backbones: step time, peak memory and trainable parameters" in text
    assert "| tiny | frozen | baseline |" in text and "| resnet_small | full |" in text


def test_second_over_first_pairs_the_orders_of_each_backbone_and_tuning():
    def entry(backbone, method, peak):
        return {
            "backbone": backbone,
            "tuning": "full",
            "method": method,
            "memory": {"rss_before_mb": 100, "peak_rss_mb": peak},
        }

    configs = {
        benchmark_foundation.key("vit", "full", m): entry("vit", m, p)
        for m, p in (("mgml 2nd order", 500), ("mgml 1st order", 300), ("baseline", 200))
    }
    times = {"vit / full / mgml 2nd order": [3.0, 4.0], "vit / full / mgml 1st order": [1.0, 2.0]}
    rows = benchmark_foundation._second_over_first({"configs": configs}, times, benchmark.ratio_stats, 10)
    assert list(rows) == ["vit / full"]
    row = rows["vit / full"]
    assert row["time"]["ratio_of_medians"] == pytest.approx(3.5 / 1.5)
    assert row["peak_rss_ratio"] == pytest.approx(500 / 300) and row["growth_ratio"] == pytest.approx(400 / 200)
