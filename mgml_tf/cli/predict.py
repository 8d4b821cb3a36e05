"""``python -m mgml_tf.predict (--export_dir=DIR | --model_dir=DIR) --input=PATH --output_dir=DIR``

For every image (a file, or every PNG/JPEG under a folder) writes into ``--output_dir`` (keeping the
input's sub-folders):

* ``<stem>_color.png``   the prediction in the Cityscapes palette,
* ``<stem>_overlay.png`` the colour mask blended over the image,
* ``<stem>_trainIds.png`` the predicted train ids (grey levels 0..N-1),
* ``<stem>_memory/<class>.png`` per-class memory activation maps (the read weights W[..., n] of eq. 4,
  the paper's Fig. 6 and 8), as heat maps over the image; by default for the classes in the prediction.

Every input is decoded before anything is written: an unreadable image stops the run with a one-line
error naming it and no output. Each output file is written atomically.

``--flagfile`` may be the training flagfile: the training flags this command does not use are ignored, with one
line naming them (docs/CLI.md, "One flagfile for every command").
"""

import os

from mgml_tf.cli import common
from mgml_tf.errors import RunError, UsageError, one_line
from mgml_tf.files import atomic_write_bytes

PROG = "mgml_tf.predict"
_EXTS = (".png", ".jpg", ".jpeg")


def make_flags():
    from absl import flags

    fv = flags.FlagValues()
    flags.DEFINE_string("export_dir", None, "SavedModel written by mgml_tf.export.", flag_values=fv)
    flags.DEFINE_string(
        "model_dir", None, "Run directory written by mgml_tf.train (newest checkpoint).", flag_values=fv
    )
    flags.DEFINE_string(
        "input", None, "An image file or a folder of images (PNG/JPEG, searched recursively).", flag_values=fv
    )
    flags.DEFINE_string("output_dir", None, "Where the PNGs go.", flag_values=fv)
    flags.DEFINE_string(
        "memory_classes",
        "predicted",
        "Memory activation maps to write: 'predicted' (classes "
        "in the prediction), 'all', 'none', or a comma list of class names.",
        flag_values=fv,
    )
    flags.DEFINE_float("overlay_alpha", 0.5, "Opacity of the colour mask in the overlays, in [0, 1].", flag_values=fv)
    return fv


def list_inputs(path):
    if os.path.isfile(path):
        return [(path, os.path.basename(path))]
    if not os.path.isdir(path):
        raise UsageError(f"--input={path} not found")
    out = []
    for folder, _, files in os.walk(path):
        for name in sorted(files):
            if name.lower().endswith(_EXTS):
                full = os.path.join(folder, name)
                out.append((full, os.path.relpath(full, path)))
    if not out:
        raise UsageError(f"--input={path} holds no PNG or JPEG images")
    return sorted(out)


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
    common.report_ignored(PROG, parsed, note)
    if bool(fv.export_dir) == bool(fv.model_dir):
        raise UsageError("give exactly one of --export_dir and --model_dir")
    for name in ("input", "output_dir"):
        if not fv[name].value:
            raise UsageError(f"--{name} is required")
    if not 0.0 <= fv.overlay_alpha <= 1.0:
        raise UsageError(f"--overlay_alpha must be in [0, 1], got {fv.overlay_alpha}")
    source = fv.export_dir or fv.model_dir
    if not os.path.isdir(source):
        raise UsageError(f"--{'export_dir' if fv.export_dir else 'model_dir'}={source} not found")
    common.check_writable("output_dir", fv.output_dir)
    inputs = list_inputs(fv.input)
    for path, _ in inputs:  # decode everything first: no output at all if one input is unreadable
        read_image(path)

    import numpy as np

    from mgml_tf import serving
    from mgml_tf import visualize as vis

    model = serving.load(export_dir=fv.export_dir, model_dir=fv.model_dir)
    names = model.class_names
    mode = fv.memory_classes.strip()
    if mode not in ("predicted", "all", "none"):
        wanted = [c.strip() for c in mode.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise UsageError(f"--memory_classes: unknown class(es) {unknown}; known: {', '.join(names)}")
    palette = model.palette
    for path, rel in inputs:
        image = read_image(path)
        labels, weights = model.run(image, want_weights=mode != "none")
        labels = labels.astype(np.int64)
        color = palette[np.clip(labels, 0, len(palette) - 1)]
        stem = os.path.join(fv.output_dir, os.path.splitext(rel)[0])
        atomic_write_bytes(stem + "_color.png", vis.encode_png(color))
        atomic_write_bytes(stem + "_overlay.png", vis.encode_png(vis.overlay(image, color, fv.overlay_alpha)))
        atomic_write_bytes(stem + "_trainIds.png", vis.encode_png(labels.astype(np.uint8)))
        written = 3
        if weights is not None:
            if mode == "all":
                classes = list(range(len(names)))
            elif mode == "predicted":
                classes = sorted(set(np.unique(labels).tolist()))
            else:
                classes = [names.index(c) for c in mode.split(",") if c.strip()]
            for c in classes:
                w = weights[..., c]
                scaled = w / max(float(w.max()), 1e-6)  # per-map scaling; the raw maximum is in the log
                heat = vis.overlay(image, vis.heatmap(scaled), 0.6)
                safe = names[c].replace(" ", "_")
                atomic_write_bytes(os.path.join(stem + "_memory", safe + ".png"), vis.encode_png(heat))
                written += 1
        print(f"{path}: {written} PNGs ({len(np.unique(labels))} classes predicted)", flush=True)
    print(f"wrote predictions of {len(inputs)} image(s) from {model.source} to {fv.output_dir}")
    return 0
