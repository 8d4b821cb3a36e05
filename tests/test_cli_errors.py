"""Bad input to the command-line tools: one line on stderr, a non-zero exit, nothing written."""

import os

import pytest

from tests.cli_helpers import refused, run_cli, tiny_args


@pytest.mark.slow  # a subprocess per case
@pytest.mark.parametrize(
    "extra, words",
    [
        (("--no_such_flag=1",), ("no_such_flag",)),
        (("--flagfile=/nonexistent/x.cfg",), ("/nonexistent/x.cfg",)),
        (("--learning_rate=-0.1",), ("learning_rate",)),
        (("--crop_size=0",), ("crop_size",)),
        (("--optimizer_momentum=1.0",), ("optimizer_momentum",)),
        (("--memory_momentum=-0.5",), ("memory_momentum",)),
        (("--method=magic",), ("method",)),
        (("--bn_epsilon=0",), ("bn_epsilon",)),
        (("--bn_statistics_from=meta_test",), ("bn_statistics_from",)),
        (("--memory_score_scale=adaptive",), ("memory_score_scale",)),
        (("--memory_centering=mean",), ("memory_centering",)),
        (("--batch_per_domain=0",), ("batch_per_domain",)),
        (("--sources=gtav:/nonexistent/GTAV",), ("/nonexistent/GTAV",)),
        (("--targets=imagenet:/tmp",), ("imagenet",)),
        (("--nouse_memory",), ("use_memory",)),
    ],
)
def test_train_refuses_bad_flags(tmp_path, extra, words):
    model_dir, synth = tmp_path / "run", tmp_path / "synth"
    refused(run_cli("train", *tiny_args(str(model_dir), str(synth), *extra)), *words)
    assert not model_dir.exists() and not synth.exists()


def test_train_needs_model_dir(tmp_path):
    refused(run_cli("train", "--sources=synthetic"), "model_dir")


@pytest.mark.slow  # three subprocesses
def test_evaluate_export_predict_refuse_missing_dirs(tmp_path):
    missing = str(tmp_path / "missing")
    refused(run_cli("evaluate", f"--model_dir={missing}"), "missing")
    refused(run_cli("export", f"--model_dir={missing}", f"--export_dir={tmp_path / 'e'}"), "missing")
    refused(
        run_cli("predict", f"--model_dir={missing}", f"--input={tmp_path}", f"--output_dir={tmp_path / 'o'}"), "missing"
    )
    refused(run_cli("predict", f"--input={tmp_path}", f"--output_dir={tmp_path / 'o'}"), "export_dir")
    assert sorted(os.listdir(tmp_path)) == []
