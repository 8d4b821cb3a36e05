"""The one command line of the generator, ``python -m mgml_tf.synthetic --family=streets|towns``."""

import glob
import json
import os
import subprocess
import sys

import pytest

from mgml_tf.synthetic import cli, families

H, W = 64, 128  # small images keep the tests fast


def _run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "mgml_tf.synthetic", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def _files(root):
    out = {}
    for p in sorted(glob.glob(str(root / "**" / "*.*"), recursive=True)):
        with open(p, "rb") as f:
            out[os.path.relpath(p, root)] = f.read()
    return out


def _error_lines(stderr):
    return [ln for ln in stderr.splitlines() if "mgml_tf.synthetic: error" in ln]


@pytest.mark.slow  # a generator subprocess per family
@pytest.mark.parametrize("family, style", [("streets", "desert_toon"), ("towns", "neon_comic")])
def test_cli_one_style(tmp_path, family, style):
    out = tmp_path / "idd"
    r = _run_cli(
        f"--family={family}",
        f"--style={style}",
        "--layout=idd",
        "--num_images=2",
        f"--output_dir={out}",
        f"--height={H}",
        f"--width={W}",
        "--split=val",
    )
    assert r.returncode == 0, r.stderr
    assert "images/s" in r.stdout and f"idd:{out}" in r.stdout
    assert len(glob.glob(str(out / "gtFine" / "val" / "0" / "*_gtFine_labelcsTrainIds.png"))) == 2
    # the same files as the family's Python API writes, recorded as that family's generator
    module = families.load(family)
    module.write_dataset(style, "idd", 2, tmp_path / "api", height=H, width=W, split="val")
    assert _files(out) == _files(tmp_path / "api")
    assert json.loads(_files(out)["SYNTHETIC.json"])["generator"] == module.GENERATOR

    for args, needle in (
        (("--style=fog", "--layout=idd"), "known styles: sunny_game"),
        (("--style=foggy", "--layout=kitti"), "known layouts: gtav"),
        (("--style=foggy", "--layout=idd", "--num_images=0"), "num_images must be a positive"),
    ):
        if family == "towns":
            args = ("--family=towns", *(a.replace("foggy", "snow_sim") for a in args))
            needle = needle.replace("sunny_game", "clay_lowpoly")
        extra = () if any(a.startswith("--num_images") for a in args) else ("--num_images=1",)
        r = _run_cli(*args, *extra, f"--output_dir={tmp_path / 'bad'}")
        assert r.returncode == 2
        lines = _error_lines(r.stderr)
        assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not os.path.exists(tmp_path / "bad")


def test_cli_default_suite_with_held_out_source_images(tmp_path):
    r = _run_cli(
        "--family=towns",
        "--num_images=1",
        "--num_val_images=1",
        "--num_source_val_images=1",
        f"--output_dir={tmp_path}",
        f"--height={H}",
        f"--width={W}",
    )
    assert r.returncode == 0, r.stderr
    towns = families.load("towns")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("wrote 9 images (64x128) in ")
    assert lines[1] == "--sources=" + ",".join(
        f"{layout}:{tmp_path}/{style}" for style, layout in towns.DEFAULT_SUITE.items() if style in towns.SOURCE_STYLES
    )
    assert lines[2] == "--targets=" + ",".join(
        f"{layout}:{tmp_path}/{style}"
        for style, layout in towns.DEFAULT_SUITE.items()
        if style not in towns.SOURCE_STYLES
    )
    held_out = [s + "_val" for s in towns.SOURCE_STYLES]
    assert sorted(os.listdir(tmp_path)) == sorted([*towns.DEFAULT_SUITE, *held_out])


def test_cli_help_lists_the_options_of_both_old_commands():
    r = _run_cli("--helpshort")  # absl exits with status 1 after the help
    for flag in (
        "family",
        "style",
        "layout",
        "num_images",
        "num_val_images",
        "num_source_val_images",
        "output_dir",
        "seed",
        "height",
        "width",
        "split",
        "print_frequencies",
    ):
        assert f"  --{flag}:" in r.stdout or f"  --[no]{flag}:" in r.stdout, flag
    assert "clay_lowpoly" in r.stdout and "sunny_game" in r.stdout


# ------------------------------------------------------------------------------------- in process (fast)
def _run_in_process(capsys, *args):
    from absl import flags

    fv = flags.FlagValues()
    cli.define_flags(fv)
    argv = fv(["mgml_tf.synthetic", *args])
    status = cli.run(argv, fv)
    return status, capsys.readouterr()


def test_default_family_and_style_write_the_streets_suite(tmp_path, capsys):
    status, out = _run_in_process(capsys, "--num_images=1", f"--output_dir={tmp_path}", f"--height={H}", f"--width={W}")
    assert status == 0, out.err
    streets = families.load("streets")
    assert sorted(os.listdir(tmp_path)) == sorted(streets.DEFAULT_SUITE)
    assert f"--sources=gtav:{tmp_path}/sunny_game," in out.out
    assert f"--targets=cityscapes:{tmp_path}/foggy," in out.out


_N, _OUT = "--num_images=1", "--output_dir=OUT"


@pytest.mark.parametrize(
    "args, words",
    [
        ([_N, _OUT, "--family=forest"], "unknown family 'forest'; known families: streets, towns"),
        ([_N, _OUT, "--style=fog"], "unknown style 'fog'; known styles: sunny_game, overcast_sim, desert_toon, "),
        ([_N, _OUT, "--family=towns", "--style=foggy"], "unknown towns style 'foggy'; known styles: clay_lowpoly, "),
        ([_N, _OUT, "--family=towns", "--style=snow_sim", "--layout=kitti"], "unknown layout 'kitti'; known layouts: "),
        ([_OUT, "--style=foggy", "--num_images=0"], "num_images must be a positive integer, got 0"),
        ([_OUT, "--num_images=0"], "num_images must be a positive integer, got 0"),
        ([_N, _OUT, "--family=towns", "--num_val_images=0"], "num_val_images must be a positive integer, got 0"),
        ([_N, _OUT, "--num_source_val_images=-1"], "num_source_val_images must be >= 0, got -1"),
        ([_N, _OUT, "--family=towns", "--height=8"], "height must be an integer >= 32, got 8"),
        ([_N, _OUT, "--style=foggy", "--width=31"], "width must be an integer >= 32, got 31"),
        ([_N, _OUT, "--style=foggy", "--split="], "split must be a plain directory name"),
        ([_OUT], "--num_images is required"),
        ([_N], "--output_dir is required"),
        ([_N, _OUT, "stray"], "unexpected arguments: stray"),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_written(tmp_path, capsys, args, words):
    out_dir = tmp_path / "out"
    status, out = _run_in_process(capsys, *(a.replace("OUT", str(out_dir)) for a in args))
    assert status == 2
    lines = _error_lines(out.err)
    assert len(lines) == 1 and lines[0].startswith(f"mgml_tf.synthetic: error: {words}"), out.err
    assert not os.path.exists(out_dir)
