"""``python -m mgml_tf.predict (--export_dir=DIR | --model_dir=DIR | --preset=DIR) --input=PATH --output_dir=DIR``

``--input`` is an image, a folder (every PNG/JPEG below it), a list file of image paths or a video
(``mgml_tf.cli.predict_inputs``). For every image it writes into ``--output_dir`` (keeping the input's
sub-folders):

* ``<stem>_color.png``   the prediction in the Cityscapes palette,
* ``<stem>_overlay.png`` the colour mask blended over the image,
* ``<stem>_trainIds.png`` the predicted train ids (grey levels 0..N-1),
* ``<stem>_memory/<class>.png`` per-class memory activation maps (the read weights W[..., n] of eq. 4,
  the paper's Fig. 6 and 8), as heat maps over the image; by default for the classes in the prediction.

Every input is decoded before anything is written: an unreadable image stops the run with a one-line
error naming it and no output. Each output file is written atomically. A video gives ``<stem>_color.mp4``
and ``<stem>_overlay.mp4`` at its frame rate and size (``--video_frames``: every frame's PNGs as above under
``<stem>_frames/``), streamed frame by frame and moved into place at the end, so an unreadable or damaged
video leaves nothing. A progress line (``predict: 12/40 images, 3.1 img/s``) is rewritten in place on a
terminal and printed every 10 s elsewhere.

``--flagfile`` may be the training flagfile: the training flags this command does not use are ignored, with one
line naming them (docs/CLI.md, "One flagfile for every command").
"""

import os

from mgml_tf.cli import common, predict_inputs
from mgml_tf.cli import preset as preset_cli
from mgml_tf.cli.progress import Progress
from mgml_tf.errors import RunError, UsageError, one_line
from mgml_tf.files import atomic_write_bytes

PROG = "mgml_tf.predict"


def make_flags():
    from absl import flags

    fv = flags.FlagValues()
    flags.DEFINE_string("export_dir", None, "SavedModel written by mgml_tf.export.", flag_values=fv)
    flags.DEFINE_string(
        "model_dir", None, "Run directory written by mgml_tf.train (newest checkpoint).", flag_values=fv
    )
    preset_cli.define_preset_flag(fv, "--export_dir or --model_dir")
    flags.DEFINE_string(
        "input",
        None,
        "An image (PNG/JPEG), a folder of images (searched recursively), a list file (.txt/.lst: one image "
        "path per line, relative to the list's folder; # comments) or a video (.mp4, .mov, .avi, .mkv, ...: "
        "needs pip install 'mgml_tf[video]').",
        flag_values=fv,
    )
    flags.DEFINE_string("output_dir", None, "Where the PNGs go.", flag_values=fv)
    flags.DEFINE_string(
        "memory_classes",
        "predicted",
        "Memory activation maps to write: 'predicted' (classes "
        "in the prediction), 'all', 'none', or a comma list of class names.",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "video_frames",
        False,
        "For a video, also write every frame's PNGs (as for an image, memory maps included) under <stem>_frames/.",
        flag_values=fv,
    )
    flags.DEFINE_float("overlay_alpha", 0.5, "Opacity of the colour mask in the overlays, in [0, 1].", flag_values=fv)
    return fv


def read_image(path):
    """uint8 ``[H, W, 3]``; ``RunError`` naming the file if it cannot be read as an image.

    PNG or JPEG only: the file is first checked like a dataset file (readable, not empty, complete, not
    0x0: ``mgml_tf.data.check_image_file``), then decoded like one (grey replicated to RGB, alpha dropped,
    16-bit scaled to 8 bits)."""
    import tensorflow as tf

    from mgml_tf.data import CorruptFileError, check_image_file

    try:
        check_image_file(path)
    except CorruptFileError as e:
        raise RunError(f"cannot read image {path}: {e}") from None
    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
        return image.numpy()
    except (tf.errors.OpError, ValueError) as e:
        import re

        reason = re.sub(r"\{\{.*?\}\}\s*", "", one_line(getattr(e, "message", str(e))))[:160]
        raise RunError(f"cannot read image {path}: {reason}") from None


def main(argv):
    common.quiet_import()
    fv = make_flags()
    parsed = common.parse_command_flags(fv, argv, PROG)
    note = ""
    if fv.export_dir and fv.model_dir and "model_dir" in parsed.from_training:
        # A training flagfile's --model_dir yields to the --export_dir given for prediction (docs/CLI.md,
        # "One flagfile for every command") instead of making the two conflict.
        fv["model_dir"].value, fv["model_dir"].present = None, 0
        note = "nor its --model_dir, as --export_dir is given"
    source, preset_note = preset_cli.one_model_source(fv, parsed, ("export_dir", "model_dir", "preset"))
    common.report_ignored(PROG, parsed, note or preset_note)
    for name in ("input", "output_dir"):
        if not fv[name].value:
            raise UsageError(f"--{name} is required")
    if not 0.0 <= fv.overlay_alpha <= 1.0:
        raise UsageError(f"--overlay_alpha must be in [0, 1], got {fv.overlay_alpha}")
    if not os.path.isdir(fv[source].value):
        raise UsageError(f"--{source}={fv[source].value} not found")
    common.check_writable("output_dir", fv.output_dir)
    if predict_inputs.kind(fv.input) == "video":
        return _predict_video(fv)
    inputs = predict_inputs.list_images(fv.input)
    for path, _ in inputs:  # decode everything first: no output at all if one input is unreadable
        read_image(path)

    model = _load_model(fv)
    mode = _memory_mode(fv, model.class_names)
    progress = Progress("predict", len(inputs), "images", "img/s")
    for path, rel in inputs:
        image = read_image(path)
        write_outputs(model, image, os.path.join(fv.output_dir, os.path.splitext(rel)[0]), mode, fv.overlay_alpha)
        progress.update()
    progress.close()
    print(f"wrote predictions of {len(inputs)} image(s) from {model.source} to {fv.output_dir}")
    return 0


def _load_model(fv):
    from mgml_tf import serving

    return serving.load(export_dir=fv.export_dir, model_dir=fv.model_dir, preset=fv.preset)


def _memory_mode(fv, names=None):
    """``--memory_classes`` checked: ``predicted``, ``all``, ``none`` or a list of class names (checked against
    ``names`` once the model is loaded)."""
    mode = fv.memory_classes.strip()
    if names is not None and mode not in ("predicted", "all", "none"):
        wanted = [c.strip() for c in mode.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise UsageError(f"--memory_classes: unknown class(es) {unknown}; known: {', '.join(names)}")
    return mode


def write_outputs(model, image, stem, mode, alpha, write=atomic_write_bytes):
    """Predicts ``image`` and writes ``<stem>_color.png``, ``_overlay.png``, ``_trainIds.png`` and the memory
    maps ``--memory_classes`` asks for; returns the colour mask and the overlay (uint8 ``[H, W, 3]``)."""
    import numpy as np

    from mgml_tf import visualize as vis

    names, palette = model.class_names, model.palette
    labels, weights = model.run(image, want_weights=mode != "none")
    labels = labels.astype(np.int64)
    color = palette[np.clip(labels, 0, len(palette) - 1)]
    overlay = vis.overlay(image, color, alpha)
    write(stem + "_color.png", vis.encode_png(color))
    write(stem + "_overlay.png", vis.encode_png(overlay))
    write(stem + "_trainIds.png", vis.encode_png(labels.astype(np.uint8)))
    if weights is not None:
        if mode == "all":
            classes = list(range(len(names)))
        elif mode == "predicted":
            classes = sorted(set(np.unique(labels).tolist()))
        else:
            classes = [names.index(c.strip()) for c in mode.split(",") if c.strip()]
        for c in classes:
            w = weights[..., c]
            scaled = w / max(float(w.max()), 1e-6)  # per-map scaling: each map shows where its class is read most
            heat = vis.overlay(image, vis.heatmap(scaled), 0.6)
            write(os.path.join(stem + "_memory", names[c].replace(" ", "_") + ".png"), vis.encode_png(heat))
    return color, overlay


def _predict_video(fv):
    """A video in, frame by frame: ``<stem>_color.mp4`` and ``<stem>_overlay.mp4`` at its frame rate and size
    (and with ``--video_frames`` every frame's PNGs under ``<stem>_frames/``). Written into a staging folder
    and moved into ``--output_dir`` at the end, so a video that turns out damaged half-way leaves nothing."""
    import shutil
    import tempfile

    from mgml_tf.video import VideoReader, VideoWriter

    with VideoReader(fv.input) as reader:  # refuses an unreadable video before anything is written
        model = _load_model(fv)
        mode = _memory_mode(fv, model.class_names) if fv.video_frames else "none"
        stem = os.path.splitext(os.path.basename(fv.input))[0]
        created = _first_missing(fv.output_dir)
        os.makedirs(fv.output_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".predict-partial-", dir=fv.output_dir)
        try:
            writers = [
                VideoWriter(os.path.join(staging, f"{stem}_{kind}.mp4"), reader.rate, reader.width, reader.height)
                for kind in ("color", "overlay")
            ]
            progress = Progress("predict", reader.num_frames, "frames", "frames/s")
            frames_stem = os.path.join(staging, f"{stem}_frames")
            for index, frame in enumerate(reader):
                color, overlay = write_outputs(
                    model,
                    frame,
                    os.path.join(frames_stem, f"{index:06d}"),
                    mode,
                    fv.overlay_alpha,
                    write=_write_file if fv.video_frames else _no_write,
                )
                writers[0].write(color)
                writers[1].write(overlay)
                progress.update()
            for writer in writers:
                writer.close()
            progress.close()
            _move_into(staging, fv.output_dir)
        except BaseException:
            shutil.rmtree(created or staging, ignore_errors=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)
    frames = f" and the PNGs of every frame in {stem}_frames/" if fv.video_frames else ""
    print(
        f"wrote {stem}_color.mp4 and {stem}_overlay.mp4 ({progress.done} frames, {float(reader.rate):g} frames/s, "
        f"{reader.width}x{reader.height}){frames} from {model.source} to {fv.output_dir}"
    )
    return 0


def _write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _no_write(path, data):
    pass


def _first_missing(path):
    """The top folder of ``path`` that does not exist yet (None if ``path`` exists): what to remove to leave
    the disk as it was."""
    path = os.path.abspath(path)
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def _move_into(staging, output_dir):
    """Every file under ``staging`` to the same place under ``output_dir`` (same file system: renames)."""
    for folder, _, files in os.walk(staging):
        target = os.path.join(output_dir, os.path.relpath(folder, staging))
        os.makedirs(target, exist_ok=True)
        for name in files:
            os.replace(os.path.join(folder, name), os.path.join(target, name))
