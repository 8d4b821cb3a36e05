"""Shareable presets: a trained model as a self-contained folder of plain files (docs/CLI.md, "Presets").

PRESET/
  preset.json          what the folder is: format name and version, the mgml_tf (Keras, TensorFlow) version
                       that wrote it, the training step, the class count
  config.json          the configuration that rebuilds the network: the model, method and optimiser sections
                       of the run's configuration (the backbone weights path dropped: the weights are here)
  backbone.json        a keras-hub backbone's architecture (no weights), as in a model directory; absent for
                       a ResNet
  variables.h5         every model variable (weights, BatchNorm statistics, the memory, LoRA factors, dropout
                       random states; not the optimiser's slots): an HDF5 file of one dataset per variable, named
                       by its Keras variable path as in the checkpoints
  labels.json          class names, palette, the ignored label, train id -> Cityscapes label id (19 classes)
  training.json        the training summary: step, checkpoint, the run's flags and its resolved domains
  evaluation.json      the model directory's eval_results.json, when it has one
  manifest.json        every other file with its size in bytes and its sha256

``pack(model_dir, preset_dir)`` writes one from the newest checkpoint of a model directory (into a temporary
sibling folder renamed into place); ``open_preset(path)`` checks one (format version, then every file against
the manifest, then the configuration) and returns a ``Preset``; ``from_preset(path)`` is the model, ready to
predict, evaluate or fine-tune. Loading reads JSON and HDF5 only: no pickle, no code from the preset, no Keras
deserialisation of classes named in a file. The manifest detects truncated, missing or altered files; it is
not a signature (whoever can write the folder can rewrite the manifest too).
"""

import hashlib
import json
import os
import shutil

from mgml_tf import config as config_lib
from mgml_tf.errors import RunError, UsageError
from mgml_tf.files import atomic_write_text, is_no_space, write_json
from mgml_tf.training import model_dir as md

FORMAT = "mgml_tf preset"
#: The preset layout this version writes and reads; a change that older readers cannot read increments it.
FORMAT_VERSION = 1

METADATA = "preset.json"
CONFIG = "config.json"
BACKBONE = "backbone.json"
WEIGHTS = "variables.h5"
LABELS = "labels.json"
TRAINING = "training.json"
EVALUATION = "evaluation.json"
MANIFEST = "manifest.json"

#: Where the configuration of ``config.json`` comes from: the sections that ``build_model`` takes.
CONFIG_SECTIONS = config_lib.MODEL_SECTIONS
_HASH_CHUNK = 1 << 20
#: What a refusal of a damaged preset file tells to do.
_AGAIN = "pack the preset again"


def sha256_of(path):
    """Hex sha256 of a file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def labels_of(num_classes):
    """``labels.json``'s content for a model of ``num_classes`` classes: the names and palette the SavedModel
    of ``mgml_tf.serving`` carries, the ignored label, and for the 19 Cityscapes classes their label ids."""
    from mgml_tf import visualize as vis
    from mgml_tf.data.labels import CLASS_NAMES, IGNORE_ID

    n = int(num_classes)
    cityscapes = n == len(CLASS_NAMES)
    return {
        "class_names": list(CLASS_NAMES) if cityscapes else [f"class_{i}" for i in range(n)],
        "palette": vis.colorize(range(n), n).tolist(),
        "ignore_index": IGNORE_ID,
        "train_id_to_label_id": vis.TRAIN_ID_TO_LABEL_ID.tolist() if cityscapes else None,
    }


# ------------------------------------------------------------------------------------------------ writing
def check_destination(preset_dir, overwrite):
    """Refuses (``UsageError``, nothing written) an existing ``preset_dir`` without ``overwrite``, and with it
    an existing folder that is not a preset (``--overwrite`` replaces a preset, never another folder)."""
    if not os.path.lexists(preset_dir):
        return
    if not overwrite:
        raise UsageError(f"--preset_dir={preset_dir} exists; remove it or pass --overwrite")
    if not os.path.isdir(preset_dir) or not os.path.isfile(os.path.join(preset_dir, MANIFEST)):
        raise UsageError(
            f"--preset_dir={preset_dir} exists and is not a preset (no {MANIFEST}); --overwrite replaces only a "
            "preset: choose another path"
        )


def pack(model_dir, preset_dir, overwrite=False, log=print):
    """Writes the preset of ``model_dir``'s newest checkpoint to ``preset_dir``; returns its metadata.

    The files are written into ``preset_dir.partial-<pid>`` and the folder renamed into place, so a reader sees
    no preset or a whole one; an existing preset is replaced only with ``overwrite``."""
    import keras
    import tensorflow as tf

    import mgml_tf

    check_destination(preset_dir, overwrite)
    model, saved, checkpoint = md.build_from_dir(model_dir, log=log)
    step = int(model.optimizer.iterations.numpy())
    sections = config_lib.RunConfig.from_flat(md.saved_model_options(model_dir, saved), strict=False)
    config = {name: getattr(sections, name).to_dict() for name in CONFIG_SECTIONS}
    config["model"]["backbone_weights"] = None  # the weights are in the preset, not where they came from
    eval_path = os.path.join(model_dir, md.EVAL_JSON)
    evaluation = md._read_json(eval_path) if os.path.isfile(eval_path) else None
    documents = {
        METADATA: {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "mgml_tf_version": mgml_tf.__version__,
            "keras_version": keras.__version__,
            "tensorflow_version": tf.__version__,
            "step": step,
            "num_classes": int(model.num_classes),
        },
        CONFIG: {"config": config},
        LABELS: labels_of(model.num_classes),
        TRAINING: {
            "step": step,
            "checkpoint": os.path.basename(checkpoint),
            "flags": saved.get("flags", {}),
            "resolved": saved.get("resolved", {}),
            **({"mgml_tf_version": saved["mgml_tf_version"]} if "mgml_tf_version" in saved else {}),
        },
    }
    if model.backbone_architecture is not None:
        documents[BACKBONE] = model.backbone_architecture
    if evaluation is not None:
        documents[EVALUATION] = evaluation

    final = os.path.abspath(preset_dir)
    tmp = final + f".partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        for name, value in documents.items():
            write_json(os.path.join(tmp, name), value)
        write_variables(model, os.path.join(tmp, WEIGHTS))
        files = {
            name: {"size": os.path.getsize(os.path.join(tmp, name)), "sha256": sha256_of(os.path.join(tmp, name))}
            for name in sorted(os.listdir(tmp))
        }
        atomic_write_text(os.path.join(tmp, MANIFEST), json.dumps({"files": files}, indent=1) + "\n")
        if os.path.lexists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_no_space(e):
            kept = " and the previous preset kept" if os.path.exists(final) else ""
            raise RunError(
                f"no space left on device while writing the preset {preset_dir}: the partial folder is removed"
                f"{kept}; free some space and pack again"
            ) from None
        raise
    log(f"packed {checkpoint} (step {step}) into {preset_dir}: {', '.join(files)}")
    return documents[METADATA]


# ------------------------------------------------------------------------------------------------ reading
def _read_document(path, name, kind=dict):
    """A JSON file of the preset at ``path``, read as a model directory's (refused in one line if it is too big
    or not JSON: ``model_dir._read_json``), and refused if it is not a ``kind``."""
    full = os.path.join(path, name)
    value = md._read_json(full, "; pack the preset again")
    if not isinstance(value, kind):
        raise RunError(f"{full} holds a JSON {type(value).__name__}, not an object; pack the preset again")
    return value


def _check_format(path, flag):
    """Refuses a folder that is not a preset, a preset of another format version, or one written by a newer
    mgml_tf; returns ``preset.json``'s content."""
    import mgml_tf

    if not os.path.isdir(path):
        raise UsageError(f"--{flag}={path} not found")
    if not os.path.isfile(os.path.join(path, METADATA)) or not os.path.isfile(os.path.join(path, MANIFEST)):
        raise RunError(
            f"--{flag}={path} is not a preset (no {METADATA} and {MANIFEST}); write one with "
            "python -m mgml_tf.preset --model_dir=DIR --preset_dir=OUT"
        )
    metadata = _read_document(path, METADATA)
    where = os.path.join(path, METADATA)
    if metadata.get("format") != FORMAT:
        raise RunError(f"{where} says format {metadata.get('format')!r}, not {FORMAT!r}: not an mgml_tf preset")
    version = metadata.get("format_version")
    written_by = metadata.get("mgml_tf_version")
    if version != FORMAT_VERSION:
        raise RunError(
            f"--{flag}={path} is a preset of format version {version!r} (written by mgml_tf {written_by}); this "
            f"mgml_tf {mgml_tf.__version__} reads version {FORMAT_VERSION}: use the mgml_tf version that wrote it, "
            "or pack the model directory again with this one"
        )
    if _newer(written_by, mgml_tf.__version__):
        raise RunError(
            f"--{flag}={path} was written by mgml_tf {written_by}, newer than this {mgml_tf.__version__}; "
            "upgrade mgml_tf to load it"
        )
    return metadata


def _newer(version, than):
    """Whether ``version`` is a version string later than ``than``; a missing or malformed one is refused."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(str(version)) > Version(than)
    except InvalidVersion:
        return True  # cannot tell what wrote it: treated as newer (refused with the reason)


def _check_files(path, flag):
    """Every file the manifest lists exists with its size and sha256 (a truncated, missing or altered file is
    refused in one line naming it); files the manifest does not list are never read."""
    manifest = _read_document(path, MANIFEST)
    files = manifest.get("files")
    where = os.path.join(path, MANIFEST)
    if not isinstance(files, dict) or not files:
        raise RunError(f"{where} lists no files; pack the preset again")
    required = {METADATA, CONFIG, WEIGHTS, LABELS, TRAINING}
    unlisted = sorted(required - set(files))
    if unlisted:
        raise RunError(f"{where} does not list {', '.join(unlisted)}; pack the preset again")
    for name, entry in files.items():
        if os.path.basename(name) != name or name in (".", "..", MANIFEST):
            raise RunError(f"{where} lists {name!r}, not a file of the preset folder; pack the preset again")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("size"), int)
            or not isinstance(entry.get("sha256"), str)
        ):
            raise RunError(f"{where}: the entry of {name} needs an integer size and a sha256; pack the preset again")
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            raise RunError(f"--{flag}={path} is incomplete: {name} is missing; copy the whole preset folder again")
        size = os.path.getsize(full)
        if size != entry["size"]:
            raise RunError(
                f"--{flag}={path} is damaged: {name} has {size} bytes, the manifest lists {entry['size']} "
                f"({'truncated' if size < entry['size'] else 'grown'}); copy the whole preset folder again"
            )
        if sha256_of(full) != entry["sha256"]:
            raise RunError(
                f"--{flag}={path} is damaged: {name} does not match its sha256 in the manifest (altered); copy the "
                "whole preset folder again"
            )
    return files


class Preset:
    """A checked preset folder: its documents (``metadata``, ``config``, ``labels``, ``training``,
    ``evaluation`` or None, ``backbone_architecture`` or None) and the ``build_model`` options they give."""

    def __init__(self, path, flag="preset"):
        self.path = path
        self.metadata = _check_format(path, flag)
        files = _check_files(path, flag)
        self.labels = _read_document(path, LABELS)
        self.training = _read_document(path, TRAINING)
        self.evaluation = _read_document(path, EVALUATION) if EVALUATION in files else None
        self.backbone_architecture = _read_document(path, BACKBONE) if BACKBONE in files else None
        if self.backbone_architecture is not None:  # checked as a model directory's before anything is built
            md.check_backbone_architecture(self.backbone_architecture, os.path.join(path, BACKBONE), _AGAIN)
        self.config = _read_document(path, CONFIG)
        self.options = self._options()
        self._check_training_record()

    @property
    def step(self):
        """The training step of the checkpoint the preset was packed from."""
        return int(self.metadata.get("step", 0))

    @property
    def weights_path(self):
        return os.path.join(self.path, WEIGHTS)

    def _options(self):
        """The ``build_model`` options of ``config.json``, each checked by the configuration's sections (unknown
        sections or options, wrong types, values out of range: one line naming the file and the option)."""
        where = os.path.join(self.path, CONFIG)
        unknown = sorted(set(self.config) - {"config"})
        sections = self.config.get("config")
        if unknown or not isinstance(sections, dict):
            raise RunError(
                f"{where} must hold one key, 'config' (the {', '.join(CONFIG_SECTIONS)} sections); found "
                f"{sorted(self.config)}; pack the preset again"
            )
        other = sorted(set(sections) - set(CONFIG_SECTIONS))
        if other:
            raise RunError(f"{where}: unknown section(s) {other}; a preset holds {list(CONFIG_SECTIONS)}")
        try:
            for name in CONFIG_SECTIONS:
                if not isinstance(sections.get(name, {}), dict):
                    raise ValueError(f"section {name!r} must be an object, got {type(sections[name]).__name__}")
                config_lib.check_json_types(config_lib.SECTIONS[name], sections.get(name, {}))
            config = config_lib.RunConfig.from_dict(sections)
        except (ValueError, TypeError) as e:
            raise RunError(
                f"{where} holds a configuration this version cannot read: {e}; pack the preset again"
            ) from None
        options = config.model_options()
        options["backbone_weights"] = None
        if options["backbone"] not in config_lib.BACKBONES and self.backbone_architecture is None:
            raise RunError(
                f"{where} names the keras-hub backbone {options['backbone']!r} but the preset has no {BACKBONE}; "
                "pack the preset again"
            )
        return options

    def _check_training_record(self):
        """``training.json``'s flags and domains (evaluate reads them as a model directory's ``flags.json``) are
        checked as those of a ``flags.json`` (``model_dir.check_saved_config``), its step and checkpoint by type."""
        where = os.path.join(self.path, TRAINING)
        record = self.training
        if not isinstance(record.get("step"), int) or not isinstance(record.get("checkpoint"), str):
            raise RunError(f"{where} needs an integer step and a checkpoint name; pack the preset again")
        saved = {"options": md.json_options(self.options)}
        saved.update({k: record[k] for k in ("flags", "resolved", "mgml_tf_version") if k in record})
        md.check_saved_config(saved, where, _AGAIN)

    def build_model(self):
        """The ``MemorySegmenter`` of the preset: built from the configuration, every variable (the memory
        included) loaded from the weights file, compiled with a fresh optimiser at step 0."""
        import mgml_tf

        try:
            model = mgml_tf.build_model(**self.options, backbone_architecture=self.backbone_architecture)
        except (TypeError, ValueError) as e:
            raise RunError(f"{os.path.join(self.path, CONFIG)} holds options build_model refuses ({e})") from None
        self.load_weights(model)
        return model

    def load_weights(self, model):
        """Loads the preset's variables into ``model`` (built with the preset's architecture): fine-tuning starts
        from exactly them. The optimiser's state is not in a preset and is left as it is."""
        read_variables(model, self.weights_path)


def write_variables(model, path):
    """Every variable of ``model`` into the HDF5 file ``path``, one dataset per variable named by its
    process-independent Keras path (``checkpoints.model_variable_paths``, the checkpoints' keys). Keras's own
    ``.weights.h5`` is not used: it saves a LoRA-tuned layer's kernel merged with its factors and loads the
    factors back as zeros, so a LoRA preset would neither equal its model nor fine-tune (zero factors have zero
    gradients)."""
    import h5py
    import numpy as np

    from mgml_tf.training import checkpoints

    with h5py.File(path, "w") as f:
        for name, variable in checkpoints.model_variable_paths(model).items():
            f.create_dataset(name, data=np.asarray(variable.numpy()))


def read_variables(model, path):
    """Assigns every variable of ``model`` from the HDF5 file ``path`` (``write_variables``), after checking that
    the file holds exactly the model's variables with their shapes and dtypes (one ``RunError`` line naming the
    first that differs; nothing assigned then). Numeric datasets only: h5py never unpickles."""
    import h5py
    import numpy as np

    from mgml_tf.training import checkpoints

    variables = checkpoints.model_variable_paths(model)
    advice = "the preset does not fit its own configuration; pack the preset again"
    try:
        with h5py.File(path, "r") as f:
            stored = {}
            f.visititems(lambda name, item: stored.update({name: item}) if isinstance(item, h5py.Dataset) else None)
            missing, extra = sorted(set(variables) - set(stored)), sorted(set(stored) - set(variables))
            if missing or extra:
                what = f"has no variable {missing[0]}" if missing else f"holds {extra[0]}, which the model has not"
                raise RunError(f"{path} {what} ({len(missing)} missing, {len(extra)} unknown): {advice}")
            values = {}
            for name, variable in variables.items():
                data, want = stored[name], (tuple(variable.shape), np.dtype(variable.dtype))
                if (data.shape, data.dtype) != want:
                    raise RunError(
                        f"{path} holds {name} as {data.dtype} {data.shape}, the model needs {want[1]} {want[0]}: "
                        f"{advice}"
                    )
                values[name] = data[()]
    except OSError as e:
        raise RunError(f"cannot read {path}: {' '.join(str(e).split())}; pack the preset again") from None
    for name, variable in variables.items():
        variable.assign(values[name])


def open_preset(path, flag="preset"):
    """The checked ``Preset`` at ``path`` (``flag`` names it in messages); ``RunError``/``UsageError`` otherwise."""
    return Preset(path, flag)


def from_preset(path):
    """The ``MemorySegmenter`` of the preset folder ``path`` (written by ``python -m mgml_tf.preset``), ready to
    predict, evaluate or fine-tune (``fit``); the preset is checked first (``open_preset``)."""
    return open_preset(path).build_model()
