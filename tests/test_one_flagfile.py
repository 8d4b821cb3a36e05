"""One flagfile for every command (docs/CLI.md): evaluate, export, predict and preset read the training flagfile,
ignore the training flags they do not use with one stdout line naming them, and give the same result as
without it; a misspelled flag is still refused in one line naming the file and line; where a training
flagfile sets a flag the command shares with training, the run's record (evaluate) and --export_dir
(predict) win over it.

One tiny training run (configs/demo_tiny.cfg: the demo flagfile configs/demo.cfg with tiny overrides; 1 step,
no targets) is shared by the module; each command runs once with the flagfile as a subprocess (the user's
path: real stdout and stderr) and once without it in-process, and the results are compared. About two
minutes on 2 CPU cores, so the tests that need the run or a subprocess are marked slow; the parse and --help
checks run in-process in seconds."""

import filecmp
import glob
import json
import os
import re

import pytest

from mgml_tf.errors import UsageError
from tests.cli_helpers import refused, run_cli, stderr_lines, tiny_args

FLAGFILE = "configs/demo_tiny.cfg"
IGNORING = "ignoring training flags it does not use:"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("one_flagfile")
    model_dir, synth = str(base / "run"), str(base / "synth")
    run_cli("train", *tiny_args(model_dir, synth, "--train_steps=1", "--checkpoint_every=1", "--targets="), check=True)
    image = sorted(glob.glob(os.path.join(synth, "foggy", "leftImg8bit", "*", "*", "*.png")))[0]
    return {"base": base, "model_dir": model_dir, "synth": synth, "image": image}


@pytest.fixture(scope="module")
def exported(run):
    """The run exported in-process without a flagfile: the reference of the export with it."""
    from mgml_tf.cli import export

    export_dir = str(run["base"] / "export")
    assert export.main(["prog", f"--model_dir={run['model_dir']}", f"--export_dir={export_dir}"]) == 0
    return export_dir


def ignore_line(stdout, prog):
    """The one line naming the ignored training flags: exactly one, whole (the next line is another report)."""
    lines = stdout.splitlines()
    found = [i for i, line in enumerate(lines) if IGNORING in line]
    assert len(found) == 1, stdout
    line = lines[found[0]]
    assert line.startswith(f"mgml_tf.{prog}: {IGNORING} --sources, "), line
    assert all(f"--{n}," in line for n in ("backbone", "crop_size", "train_steps", "memory_init_batches")), line
    assert f"(from {FLAGFILE})" in line, line
    assert found[0] + 1 == len(lines) or not lines[found[0] + 1].startswith("--"), stdout  # not wrapped
    return line


def in_process(main, *argv):
    assert main(["prog", *argv]) == 0


def files_under(folder):
    paths = glob.glob(os.path.join(folder, "**", "*"), recursive=True)
    return sorted(os.path.relpath(p, folder) for p in paths if os.path.isfile(p))


# ------------------------------------------------------------------------------------------ the three tools
@pytest.mark.slow  # a subprocess, and the shared training subprocess
def test_evaluate_with_the_training_flagfile(run, tmp_path):
    from mgml_tf.cli import evaluate

    args = [f"--model_dir={run['model_dir']}", "--targets=synthetic:foggy"]
    proc = run_cli("evaluate", f"--flagfile={FLAGFILE}", *args, f"--output_json={tmp_path / 'with.json'}")
    assert proc.returncode == 0 and stderr_lines(proc) == [], proc.stderr
    line = ignore_line(proc.stdout, "evaluate")
    assert proc.stdout.splitlines()[0] == line and proc.stdout.splitlines()[1].startswith("evaluating ")
    # Shared with training: --targets (given on the command line here) is not ignored; the flagfile's
    # --synthetic_root differs from the run's (tiny_args gives another): the run's record is used, and named.
    names = line.split(" (from ")[0]
    assert "--targets" not in names and "--synthetic_root" not in names and "--model_dir" not in names
    assert line.endswith(
        f"; --synthetic_root as the run recorded them in {run['model_dir']}/flags.json, not as the flagfile gives them"
    )
    in_process(evaluate.main, *args, f"--output_json={tmp_path / 'without.json'}")
    with_flagfile = json.load(open(tmp_path / "with.json"))
    assert with_flagfile == json.load(open(tmp_path / "without.json"))
    assert list(with_flagfile) == ["cityscapes:foggy"] and with_flagfile["cityscapes:foggy"]["num_images"] == 2


@pytest.mark.slow  # a subprocess, and the shared training subprocess
def test_export_with_the_training_flagfile(run, exported, tmp_path):
    export_dir = str(tmp_path / "export")
    proc = run_cli("export", f"--flagfile={FLAGFILE}", f"--model_dir={run['model_dir']}", f"--export_dir={export_dir}")
    assert proc.returncode == 0 and stderr_lines(proc) == [], proc.stderr
    ignore_line(proc.stdout, "export")
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"exported {run['model_dir']}") and "serving_default" in lines[1]
    assert files_under(export_dir) == files_under(exported)
    meta = "assets.extra/mgml_tf.json"
    assert json.load(open(os.path.join(export_dir, meta))) == json.load(open(os.path.join(exported, meta)))


@pytest.mark.slow  # a subprocess, and the shared training subprocess
def test_predict_with_the_training_flagfile(run, tmp_path):
    from mgml_tf.cli import predict

    args = [f"--model_dir={run['model_dir']}", f"--input={run['image']}"]
    proc = run_cli("predict", f"--flagfile={FLAGFILE}", *args, f"--output_dir={tmp_path / 'with'}")
    assert proc.returncode == 0 and stderr_lines(proc) == [], proc.stderr
    assert proc.stdout.splitlines()[0] == ignore_line(proc.stdout, "predict")
    in_process(predict.main, *args, f"--output_dir={tmp_path / 'without'}")
    with_files = files_under(tmp_path / "with")
    assert with_files == files_under(tmp_path / "without") and any(f.endswith("_color.png") for f in with_files)
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "with", tmp_path / "without", with_files, shallow=False)
    assert not mismatch and not errors


@pytest.mark.slow  # a subprocess, and the shared training subprocess
def test_preset_with_the_training_flagfile(run, tmp_path):
    """The preset command packs the run alike with and without the flagfile: the same files, the same
    configuration, labels and training record."""
    from mgml_tf.cli import preset

    args = [f"--model_dir={run['model_dir']}"]
    proc = run_cli("preset", f"--flagfile={FLAGFILE}", *args, f"--preset_dir={tmp_path / 'with'}")
    assert proc.returncode == 0 and stderr_lines(proc) == [], proc.stderr
    assert proc.stdout.splitlines()[0] == ignore_line(proc.stdout, "preset")
    in_process(preset.main, *args, f"--preset_dir={tmp_path / 'without'}")
    files = files_under(tmp_path / "with")
    assert files == files_under(tmp_path / "without") and "config.json" in files
    for name in ("config.json", "labels.json", "training.json"):
        assert json.load(open(tmp_path / "with" / name)) == json.load(open(tmp_path / "without" / name)), name


@pytest.mark.slow  # needs the shared training subprocess
def test_predict_export_dir_wins_over_the_flagfiles_model_dir(run, exported, tmp_path, capsys):
    """An experiment's flagfile that names its --model_dir: predict --export_dir uses the export instead of
    refusing the two, and says so on the ignore line."""
    from mgml_tf.cli import predict

    experiment = tmp_path / "experiment.cfg"
    experiment.write_text(f"--flagfile={FLAGFILE}\n--model_dir={tmp_path / 'not_this_one'}\n")
    args = [f"--export_dir={exported}", f"--input={run['image']}", "--memory_classes=none"]
    in_process(predict.main, f"--flagfile={experiment}", *args, f"--output_dir={tmp_path / 'with'}")
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if IGNORING in x]
    assert len(line) == 1 and line[0].endswith(f"(from {experiment}); nor its --model_dir, as --export_dir is given")
    assert f"from {exported}" in out
    in_process(predict.main, *args, f"--output_dir={tmp_path / 'without'}")
    files = files_under(tmp_path / "with")
    assert files == files_under(tmp_path / "without")
    assert not filecmp.cmpfiles(tmp_path / "with", tmp_path / "without", files, shallow=False)[1]


# ------------------------------------------------------------------------ shared flags: the run's record wins
@pytest.mark.slow  # needs the shared training subprocess
def test_evaluate_takes_the_runs_record_over_a_training_flagfile(run, tmp_path, capsys):
    """The run evaluated every image (--max_eval_images=0); a training flagfile that says 1 does not silently
    change that (the line names it); the command line, or a flagfile of evaluation flags only, still does."""
    from mgml_tf.cli import evaluate

    training = tmp_path / "training.cfg"
    training.write_text(f"--flagfile={FLAGFILE}\n--max_eval_images=1\n")
    evaluation = tmp_path / "evaluation.cfg"
    evaluation.write_text("--max_eval_images=1\n")
    base = [f"--model_dir={run['model_dir']}", "--targets=synthetic:foggy"]

    def images(flagfile, *argv):
        out_json = tmp_path / "r.json"
        in_process(evaluate.main, f"--flagfile={flagfile}", *base, *argv, f"--output_json={out_json}")
        return json.load(open(out_json))["cityscapes:foggy"]["num_images"], capsys.readouterr().out

    def note(out):
        lines = [x for x in out.splitlines() if IGNORING in x]
        assert len(lines) == 1, out
        return lines[0].split("; ", 1)[1]

    count, out = images(training)
    assert count == 2 and note(out).startswith("--synthetic_root, --max_eval_images as the run recorded them")
    count, out = images(training, "--max_eval_images=1")
    assert count == 1 and note(out).startswith("--synthetic_root as the run recorded them")
    count, out = images(evaluation)
    assert count == 1 and IGNORING not in out


# ---------------------------------------------------------------------------------------- still refused
@pytest.mark.slow  # a subprocess
def test_misspelled_flag_in_a_flagfile_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text(f"--flagfile={FLAGFILE}\n--crop_sise=64\n")
    proc = run_cli("evaluate", f"--flagfile={bad}", "--model_dir=/nonexistent")
    line = refused(proc, "unknown flag --crop_sise", f"{bad}:2")
    assert proc.returncode == 2 and line.startswith("mgml_tf.evaluate: error:") and IGNORING not in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["bad.cfg"]


@pytest.mark.parametrize("tool", ["evaluate", "export", "predict", "preset"])
def test_unknown_flags_are_still_errors(tmp_path, tool):
    """In-process parse: a flag no command knows, in a flagfile or included one; a training flag on the
    command line (it would do nothing there)."""
    import importlib

    from mgml_tf.cli import common

    module = importlib.import_module(f"mgml_tf.cli.{tool}")
    inner = tmp_path / "inner.cfg"
    inner.write_text("--sources=synthetic\n# comment\n--no_such_flag=1\n")
    outer = tmp_path / "outer.cfg"
    outer.write_text(f"--flagfile={FLAGFILE}\n--flagfile={inner}\n")
    for argv, words in (
        ([f"--flagfile={outer}"], ("unknown flag --no_such_flag", f"{inner}:3")),
        ([f"--flagfile={FLAGFILE}", "--crop_size=64"], ("unknown flag --crop_size", "the command line")),
        ([f"--flagfile={FLAGFILE}", "--noaux_headd"], ("unknown flag --noaux_headd", "the command line")),
    ):
        with pytest.raises(UsageError) as e:
            common.parse_command_flags(module.make_flags(), ["prog", *argv], module.PROG)
        assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize("tool", ["evaluate", "export", "predict", "preset"])
def test_help_lists_only_the_commands_own_flags(tool, capsys):
    import importlib

    module = importlib.import_module(f"mgml_tf.cli.{tool}")
    with pytest.raises(SystemExit) as e:
        module.main(["prog", f"--flagfile={FLAGFILE}", "--help"])
    listed = re.findall(r"^\s+--(?:\[no\])?(\w+):", capsys.readouterr().out, re.MULTILINE)
    assert e.value.code == 0 and "model_dir" in listed and "sources" not in listed
    assert sorted(set(listed) - {"flagfile", "undefok"}) == sorted(module.make_flags())  # absl adds those two


def test_a_circular_include_is_ignored_as_absl_does(tmp_path):
    """a.cfg includes b.cfg, which includes a.cfg again: read once each, no recursion."""
    from mgml_tf.cli import common

    a, b = tmp_path / "a.cfg", tmp_path / "b.cfg"
    a.write_text(f"--flagfile={b}\n--learning_rate=0.5\n")
    b.write_text(f"--flagfile={a}\n--train_steps=7\n")
    lines = [line for line, _ in common._expand_args([f"--flagfile={a}"])]
    assert lines == ["--train_steps=7", "--learning_rate=0.5"]
