"""``mgml_tf.predict`` on what users have (docs/CLI.md, "mgml_tf.predict"): a folder tree, a list file, a video
(frames in, a coloured and an overlaid video out at the same frame rate and size), with a progress line;
bad inputs (a missing list entry, an unreadable video) are one line and nothing is written.

One small model (tests.helpers.small_model, 4 classes) exported once for the module; predict runs in-process
through ``common.run`` (the command's one-line errors and exit codes). The expected labels are the exported
model's own answers on the same decoded pixels."""

import fractions
import io
import os

import numpy as np
import pytest
import tensorflow as tf

from mgml_tf.cli import common, predict
from mgml_tf.cli.progress import Progress

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from mgml_tf import serving
    from tests.helpers import small_model

    export_dir = str(tmp_path_factory.mktemp("predict_inputs") / "export")
    serving.export(small_model(), export_dir)
    return export_dir


@pytest.fixture(scope="module")
def served(exported):
    from mgml_tf import serving

    return serving.load(export_dir=exported)


def run_predict(capsys, *args):
    """(exit status, stdout, non-empty stderr lines) of ``python -m mgml_tf.predict args``, in-process."""
    with pytest.raises(SystemExit) as e:
        common.run(predict.PROG, predict.main, [predict.PROG, *args])
    captured = capsys.readouterr()
    return e.value.code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def write_png(path, seed, size=(24, 32)):
    image = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.io.encode_png(image).numpy())
    return image


def write_jpeg(path, seed, size=(24, 32)):
    image = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tf.io.encode_jpeg(image).numpy())
    return tf.io.decode_jpeg(tf.io.encode_jpeg(image)).numpy()  # what predict decodes


def read_ids(path):
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()[..., 0]


def outputs(folder):
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, f), folder) for f in files]
    return sorted(found)


def write_video(path, frames, rate):
    """An H.264 MP4 of uint8 RGB frames, written with PyAV as a user's camera or editor would."""
    height, width = frames[0].shape[:2]
    even = height % 2 == 0 and width % 2 == 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p" if even else "yuv444p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_video(path):
    """(frames, average rate, codec name) of a video file, decoded with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.average_rate, stream.codec_context.name


def scene_frames(count, height, width):
    """Smooth moving colour ramps (what a video codec keeps well)."""
    y, x = np.mgrid[0:height, 0:width]
    return [
        np.stack([(x * 255 // width + 20 * i) % 256, y * 255 // height, np.full_like(x, 60 * i % 256)], -1).astype(
            np.uint8
        )
        for i in range(count)
    ]


# ------------------------------------------------------------------------------------------ folder tree
def test_folder_tree_is_searched_recursively(exported, served, tmp_path, capsys):
    tree = tmp_path / "tree"
    images = {
        "top.png": write_png(tree / "top.png", 0),
        "a/b/deep.png": write_png(tree / "a" / "b" / "deep.png", 1),
        "a/photo.jpg": write_jpeg(tree / "a" / "photo.jpg", 2),
    }
    (tree / "a" / "notes.txt").write_text("not an image\n")
    out = tmp_path / "out"
    status, stdout, err = run_predict(
        capsys, f"--export_dir={exported}", f"--input={tree}", f"--output_dir={out}", "--memory_classes=none"
    )
    assert status == 0 and err == [], err
    stems = [os.path.splitext(rel)[0] for rel in sorted(images)]
    assert outputs(out) == sorted(f"{s}_{kind}.png" for s in stems for kind in ("color", "overlay", "trainIds"))
    for rel, image in images.items():
        labels, _ = served.run(image, want_weights=False)
        np.testing.assert_array_equal(read_ids(out / (os.path.splitext(rel)[0] + "_trainIds.png")), labels)
    assert stdout.splitlines()[-2].startswith("predict: 3/3 images, ")


def test_images_that_would_share_outputs_are_refused(exported, tmp_path, capsys):
    tree = tmp_path / "tree"
    write_png(tree / "x.png", 0)
    write_jpeg(tree / "x.jpg", 1)
    out = tmp_path / "out"
    status, stdout, err = run_predict(capsys, f"--export_dir={exported}", f"--input={tree}", f"--output_dir={out}")
    assert status == 2 and len(err) == 1 and "x.jpg and x.png would write the same outputs (x_*)" in err[0], err
    assert not out.exists()


# -------------------------------------------------------------------------------------------- list file
def test_list_file_relative_to_its_folder(exported, served, tmp_path, capsys):
    lists = tmp_path / "lists"
    first = write_png(lists / "shots" / "one.png", 3)
    second = write_png(tmp_path / "elsewhere" / "two.png", 4)
    write_png(lists / "shots" / "not_listed.png", 5)
    listing = lists / "images.txt"
    listing.write_text(f"# my images\n\nshots/one.png\n   \n{tmp_path / 'elsewhere' / 'two.png'}\n")
    out = tmp_path / "out"
    status, _, err = run_predict(
        capsys, f"--export_dir={exported}", f"--input={listing}", f"--output_dir={out}", "--memory_classes=none"
    )
    assert status == 0 and err == [], err
    # one entry lies outside the list's folder: names are relative to the entries' common folder
    names = [f"{s}_{k}.png" for s in ("elsewhere/two", "lists/shots/one") for k in ("color", "overlay", "trainIds")]
    assert outputs(out) == sorted(names)
    np.testing.assert_array_equal(read_ids(out / "lists/shots/one_trainIds.png"), served.run(first, False)[0])
    np.testing.assert_array_equal(read_ids(out / "elsewhere/two_trainIds.png"), served.run(second, False)[0])
    # all inside: relative to the list's folder
    inside = lists / "inside.lst"
    inside.write_text("shots/one.png\nshots/not_listed.png\n")
    status, _, err = run_predict(
        capsys,
        f"--export_dir={exported}",
        f"--input={inside}",
        f"--output_dir={tmp_path / 'o2'}",
        "--memory_classes=none",
    )
    assert status == 0 and {os.path.dirname(p) for p in outputs(tmp_path / "o2")} == {"shots"}


@pytest.mark.parametrize(
    "entries, line, words",
    [
        (["a.png", "# fine", "missing.png"], 3, ["missing.png not found", "relative to the list's folder"]),
        (["a.png", "notes.txt"], 2, ["notes.txt is not a PNG or JPEG image"]),
        (["a.png", "", "./a.png"], 3, ["would write the same outputs"]),
    ],
    ids=["missing", "not an image", "twice"],
)
def test_bad_list_entry_is_one_line_naming_file_and_line(exported, tmp_path, capsys, entries, line, words):
    write_png(tmp_path / "a.png", 0)
    (tmp_path / "notes.txt").write_text("x\n")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(entries) + "\n")
    out = tmp_path / "out"
    status, stdout, err = run_predict(capsys, f"--export_dir={exported}", f"--input={listing}", f"--output_dir={out}")
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("mgml_tf.predict: error: ") and f"{listing}:{line}" in err[0], err[0]
    for word in words:
        assert word in err[0], err[0]
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ video
@pytest.mark.parametrize("height, width", [(32, 48), (27, 45)], ids=["even", "odd size"])
def test_video_in_coloured_and_overlaid_videos_out(exported, served, tmp_path, capsys, height, width):
    rate = fractions.Fraction(12, 1)
    source = tmp_path / "clip.mp4"
    write_video(source, scene_frames(5, height, width), rate)
    decoded, _, _ = read_video(source)  # the pixels predict sees
    out = tmp_path / "out"
    args = [f"--export_dir={exported}", f"--input={source}", f"--output_dir={out}", "--memory_classes=all"]
    status, stdout, err = run_predict(capsys, *args, "--video_frames")
    assert status == 0 and err == [], err
    frame_pngs = [f"clip_frames/{i:06d}_{k}.png" for i in range(5) for k in ("color", "overlay", "trainIds")]
    maps = [f"clip_frames/{i:06d}_memory/class_{c}.png" for i in range(5) for c in range(4)]
    assert outputs(out) == sorted(["clip_color.mp4", "clip_overlay.mp4", *frame_pngs, *maps])
    palette = served.palette
    for kind in ("color", "overlay"):
        frames, out_rate, codec = read_video(out / f"clip_{kind}.mp4")
        assert len(frames) == 5 and out_rate == rate and codec == "h264"
        assert all(f.shape == (height, width, 3) for f in frames)
    colour_frames, _, _ = read_video(out / "clip_color.mp4")
    for i, frame in enumerate(decoded):
        labels, _ = served.run(frame, want_weights=False)
        np.testing.assert_array_equal(read_ids(out / f"clip_frames/{i:06d}_trainIds.png"), labels)
        # the colour video is the palette of those labels, up to the codec's loss
        error = np.abs(colour_frames[i].astype(int) - palette[labels].astype(int))
        assert error.mean() < 6, error.mean()
    assert "wrote clip_color.mp4 and clip_overlay.mp4 (5 frames, 12 frames/s" in stdout
    # without --video_frames: the two videos only
    status, _, _ = run_predict(capsys, *args[:2], f"--output_dir={tmp_path / 'plain'}")
    assert status == 0 and outputs(tmp_path / "plain") == ["clip_color.mp4", "clip_overlay.mp4"]


def damage_after_the_first_frames(path):
    """Overwrites the coded data of every frame after the third: the container and the first frames stay
    readable, so the damage is found while the frames stream, after the outputs were begun."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    for position, size in packets[3:]:
        data[position : position + size] = b"\xff" * size
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["not a video", "truncated", "damaged inside"])
def test_unreadable_video_is_one_line_and_writes_nothing(exported, tmp_path, capsys, damage):
    source = tmp_path / "clip.mp4"
    if damage == "not a video":
        source.write_text("this is a text file named like a video\n")
    else:
        write_video(source, scene_frames(12, 32, 48), 12)
        if damage == "truncated":
            source.write_bytes(source.read_bytes()[:300])
        else:
            damage_after_the_first_frames(source)
    out = tmp_path / "new" / "out"
    status, stdout, err = run_predict(capsys, f"--export_dir={exported}", f"--input={source}", f"--output_dir={out}")
    assert status == 1 and len(err) == 1, (stdout, err)
    assert err[0].startswith(f"mgml_tf.predict: error: cannot read video {source}: "), err[0]
    assert ("(the file is damaged)" in err[0]) == (damage == "damaged inside"), err[0]
    assert not (tmp_path / "new").exists()
    # an output folder that exists keeps exactly what it held
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "earlier_color.png").write_bytes(b"earlier")
    status, _, _ = run_predict(
        capsys, f"--export_dir={exported}", f"--input={source}", f"--output_dir={tmp_path / 'kept'}"
    )
    assert status == 1 and os.listdir(tmp_path / "kept") == ["earlier_color.png"]


def test_an_unknown_kind_of_input_is_refused(exported, tmp_path, capsys):
    (tmp_path / "scan.tif").write_bytes(b"II*\0")
    status, _, err = run_predict(
        capsys, f"--export_dir={exported}", f"--input={tmp_path / 'scan.tif'}", f"--output_dir={tmp_path / 'o'}"
    )
    assert status == 2 and len(err) == 1 and "is not an image (.png, .jpg, .jpeg), a video (.mp4" in err[0], err


# --------------------------------------------------------------------------------------------- progress
class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_line_in_place_on_a_terminal():
    stream, clock = Terminal(), Clock()
    progress = Progress("predict", 40, "images", "img/s", stream=stream, clock=clock)
    clock.now += 2.0
    progress.update()
    clock.now += 2.0
    progress.update(12)
    progress.close()
    text = stream.getvalue()
    assert "\n" not in text[:-1] and text.endswith("\n")
    shown = text[:-1].split("\r")[1:]
    assert shown[0] == "predict: 1/40 images, 0.5 img/s"
    assert shown[1] == "predict: 12/40 images, 3.0 img/s"
    assert shown[-1] == "predict: 12/40 images, 3.0 img/s"


def test_progress_lines_elsewhere_are_periodic_and_plain():
    stream, clock = io.StringIO(), Clock()
    progress = Progress("predict", None, "frames", "frames/s", stream=stream, every=10.0, clock=clock)
    for _ in range(30):
        clock.now += 1.0
        progress.update()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines == [
        "predict: 10 frames, 1.0 frames/s",
        "predict: 20 frames, 1.0 frames/s",
        "predict: 30 frames, 1.0 frames/s",
        "predict: 30 frames, 1.0 frames/s",
    ]
