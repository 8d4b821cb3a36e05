"""The training command reads published split lists: ``--sources=synthia:ROOT:split_list=published`` trains on
the shipped Synthia train list and ``--targets=...:split_list=published`` evaluates on its val list
(docs/DATA.md, "Synthia's split"); ``split_list=FILE`` takes any list. The miniature Synthia tree has the
release's 9400 file names, each a hard link to one tiny generated pair, so the published lists find every
file they name."""

import json
import os

import pytest

from mgml_tf.data import splits
from mgml_tf.errors import UsageError
from mgml_tf.training import data as data_lib
from tests.cli_helpers import run_cli, stderr_lines, tiny_args


def list_stems(split):
    with open(splits.path("synthia", split)) as f:
        return sorted(os.path.splitext(line.strip())[0] for line in f if line.strip())


@pytest.fixture(scope="module")
def synthia_root(tmp_path_factory):
    """SYNTHIA-RAND-CITYSCAPES in miniature: RGB/0000000.png ... 0009399.png and GT/LABELS/ alike, flat as
    distributed, every pair one 64x128 scene of the generator (hard links: no space, quick to make)."""
    from mgml_tf.synthetic import streets

    root = tmp_path_factory.mktemp("synthia")
    one = tmp_path_factory.mktemp("one_scene")
    [(image, label)] = streets.write_dataset("overcast_sim", "synthia", 1, str(one), height=64, width=128)["pairs"]
    for folder, source in (("RGB", image), ("GT/LABELS", label)):
        os.makedirs(root / folder)
        for i in range(9400):
            os.link(source, root / folder / f"{i:07d}.png")
    return str(root)


def stems(domain):
    return sorted(os.path.splitext(os.path.basename(image))[0] for image, _ in domain.pairs)


def test_published_selects_the_list_of_each_flags_split(synthia_root):
    spec = f"synthia:{synthia_root}:split_list=published"
    data_lib.check_specs(spec, "sources")
    data_lib.check_specs(spec, "targets")
    [train] = data_lib.load([spec], "train", "sources")
    [val] = data_lib.load([spec], "val", "targets")
    assert stems(train) == list_stems("train") and stems(val) == list_stems("val")
    assert len(train) == 6580 and len(val) == 2820
    # Without a list every file of the flat release is in every split.
    [everything] = data_lib.load([f"synthia:{synthia_root}"], "train", "sources")
    assert len(everything) == 9400


def test_a_list_file_is_recorded_absolute(synthia_root, tmp_path, monkeypatch):
    (tmp_path / "mine.txt").write_text("# two images\n0000007.png\n\n0000003\n")
    monkeypatch.chdir(tmp_path)
    [resolved] = data_lib.expand(f"synthia:{synthia_root}:split_list=mine.txt", "source", None)
    assert resolved == f"synthia:{synthia_root}:split_list={tmp_path / 'mine.txt'}"
    monkeypatch.chdir(os.path.dirname(synthia_root))  # the run's record is read from elsewhere later
    [domain] = data_lib.load([resolved], "train", "sources")
    assert stems(domain) == ["0000003", "0000007"]
    published = f"synthia:{synthia_root}:split_list=published"
    assert data_lib.expand(published, "target", None) == [published]  # the word, resolved where it is read


@pytest.mark.parametrize(
    "spec, flag, words",
    [
        ("gtav:{root}:split_list=published", "sources", ["no published split list for gtav/train", "synthia/val"]),
        ("synthia:{root}:split_list=/no/such/list.txt", "targets", ["split list /no/such/list.txt", "not found"]),
        ("synthia:{root}:split_list=", "sources", ["split_list= needs a value: published"]),
        ("synthetic:split_list=published", "sources", ["synthetic domains", "own splits"]),
        ("synthia:/no/such/root:split_list=published", "sources", ["dataset root /no/such/root", "not found"]),
    ],
)
def test_bad_lists_are_one_line_before_any_work(synthia_root, spec, flag, words):
    with pytest.raises(UsageError) as e:
        data_lib.check_specs(spec.format(root=synthia_root), flag)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"--{flag}: ")
    for word in words:
        assert word in message, message


def test_a_list_naming_absent_files_is_one_line(synthia_root, tmp_path):
    (tmp_path / "bad.txt").write_text("0000001.png\n0012345.png\n")
    spec = f"synthia:{synthia_root}:split_list={tmp_path / 'bad.txt'}"
    data_lib.check_specs(spec, "sources")
    with pytest.raises(UsageError, match=r"--sources: synthia: split list .*bad.txt.* 1 file\(s\).*0012345"):
        data_lib.load([spec], "train", "sources")


@pytest.mark.slow  # a training subprocess
def test_train_cli_on_the_published_synthia_split(synthia_root, tmp_path):
    model_dir = str(tmp_path / "run")
    spec = f"synthia:{synthia_root}:split_list=published"
    proc = run_cli(
        "train",
        *tiny_args(model_dir, str(tmp_path / "synth"), "--method=baseline", "--train_steps=1", "--checkpoint_every=1"),
        f"--sources={spec}",
        f"--targets={spec}",
        "--max_eval_images=1",
        timeout=900,
    )
    assert proc.returncode == 0 and stderr_lines(proc) == [], proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert f"sources: synthia:{synthia_root} (6580 images)" in lines
    assert f"targets: synthia:{synthia_root} (2820 images)" in lines
    with open(os.path.join(model_dir, "flags.json")) as f:
        resolved = json.load(f)["resolved"]
    assert resolved["sources"] == [spec] and resolved["targets"] == [spec]


# ------------------------------------------------------------------------------------- the data checker
def test_the_checker_reads_the_same_domain_option(synthia_root, tmp_path, capsys):
    """``python -m mgml_tf.data.check`` takes the domains as training does, split lists included, and
    ``--split_list=published``."""
    from mgml_tf.cli import common
    from mgml_tf.data import check

    published = f"synthia:{synthia_root}:split_list=published"
    [source] = check.parse_domains(published, None)
    [target] = check.parse_domains(None, published)
    assert (source.split, source.split_list) == ("train", splits.path("synthia", "train"))
    assert (target.split, target.split_list) == ("val", splits.path("synthia", "val"))
    [flag] = check.parse_domains(None, f"synthia:{synthia_root}", split_list="published")
    assert flag == target
    with pytest.raises(UsageError, match="--split_list=published: no published split list for gtav/train"):
        check.parse_domains(f"gtav:{synthia_root}", None, split_list="published")
    with pytest.raises(UsageError, match="--sources: .*no published split list for gtav/train"):
        check.parse_domains(f"gtav:{synthia_root}:split_list=published", None)
    (tmp_path / "two.txt").write_text("0000004.png\n0000009.png\n")
    with pytest.raises(SystemExit) as e:
        common.run(
            check.PROG, check.main, [check.PROG, f"--targets=synthia:{synthia_root}:split_list={tmp_path / 'two.txt'}"]
        )
    out = capsys.readouterr().out
    assert e.value.code == 0 and "(the split list selects 2 images, 2 labels), 2 pairs" in out, out
