"""Loaders for the published dataset layouts, all mapped to the 19 Cityscapes train ids (255 = ignore).

`load_domain(name, root, split)` lists and pairs the files (in Python, once) and returns a `Domain`;
`Domain.as_dataset()` reads, decodes and maps them in `tf.data` (TF ops only: no Pillow, no OpenCV).

Errors are `DataError` subclasses (also `ValueError` / `FileNotFoundError`) with one-line messages that
say what to do. A corrupt or truncated file met while the `tf.data` pipeline runs raises a TensorFlow
`InvalidArgumentError` whose message names the file (structural checks run before decoding);
`check_files=True` decodes every file up front instead, and `skip_bad=True` drops bad pairs and records
them in `Domain.skipped`.
"""

import concurrent.futures
import dataclasses
import glob
import logging
import os
import struct

import tensorflow as tf

from mgml_tf import config as config_lib
from mgml_tf.data import labels as L
from mgml_tf.data.names import KNOWN_DATASETS

AUTOTUNE = tf.data.AUTOTUNE

_log = logging.getLogger("mgml_tf.data")
_MAX_NAMED = 3  # how many file names an error message lists


# ----------------------------------------------------------------------------------------------- errors
class DataError(Exception):
    """Base class of every data loading error raised by `mgml_tf.data`."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The dataset root (or a folder of its layout) does not exist."""


class NoFilesFoundError(DataError, FileNotFoundError):
    """The layout's folders exist but hold no matching files."""


class SplitListError(DataError, FileNotFoundError):
    """A split-list file is missing or names files that do not exist."""


class UnpairedFilesError(DataError, ValueError):
    """Images without labels, or labels without images."""


class UnknownDatasetError(DataError, ValueError):
    """The dataset name is not one of `KNOWN_DATASETS`."""


class SizeMismatchError(DataError, ValueError):
    """An image and its label have different heights or widths."""


class CorruptFileError(DataError, ValueError):
    """A file cannot be decoded (corrupt, truncated, empty, 0x0 pixels, or not a PNG/JPEG)."""


class ImageTooLargeError(CorruptFileError):
    """A PNG or JPEG whose header declares more pixels than `config_lib.max_image_pixels()`, or a PNG larger
    than its declared pixels can need (a decompression bomb): refused from its header, before decoding."""


class SymlinkLoopError(DataError, ValueError):
    """A symlink in a dataset or input tree points to a folder that contains it."""


class UnknownLabelValueError(DataError, ValueError):
    """A label holds values that are neither a class id nor ignore in its dataset's label map
    (found by `check_files=True`; the streaming pipeline maps such values to ignore)."""


def _names(paths, total=None):
    paths = list(paths)
    total = len(paths) if total is None else total
    shown = ", ".join(repr(p) for p in paths[:_MAX_NAMED])
    more = f" and {total - _MAX_NAMED} more" if total > _MAX_NAMED else ""
    return shown + more


# ------------------------------------------------------------------------------------------ label formats
@dataclasses.dataclass(frozen=True)
class LabelFormat:
    """How a dataset's label PNG becomes train ids.

    kind: "ids" (grey PNG of ids), "ids16" (channel 0 of an 8- or 16-bit PNG: SYNTHIA),
    "ids_or_colors" (grey PNG of ids, or a colour/palette PNG read through `color_map`).
    num_ids: the ids a label of this dataset may hold are 0..num_ids-1 and 255; known_colors: the colours
    a colour label may hold. Values outside them are unknown: mapped to ignore while streaming, refused
    by `check_files=True` (`UnknownLabelValueError`).
    """

    kind: str
    id_map: dict
    color_map: dict = None
    num_ids: int = 256
    known_colors: tuple = None


_CITYSCAPES_FMT = LabelFormat("ids", L.CITYSCAPES_LABEL_ID_TO_TRAIN_ID, num_ids=L.CITYSCAPES_NUM_LABEL_IDS)
_TRAIN_ID_FMT = LabelFormat("ids", L.TRAIN_ID_IDENTITY, num_ids=L.NUM_CLASSES)
LABEL_FORMATS = {
    "gtav": LabelFormat(
        "ids_or_colors",
        L.CITYSCAPES_LABEL_ID_TO_TRAIN_ID,
        L.GTAV_COLOR_TO_TRAIN_ID,
        num_ids=L.CITYSCAPES_NUM_LABEL_IDS,
        known_colors=L.CITYSCAPES_ALL_COLORS,
    ),
    "synthia": LabelFormat("ids16", L.SYNTHIA_ID_TO_TRAIN_ID, num_ids=len(L.SYNTHIA_CLASS_NAMES)),
    "cityscapes": _CITYSCAPES_FMT,
    "bdd100k": _TRAIN_ID_FMT,
    "mapillary": LabelFormat(
        "ids_or_colors",
        L.MAPILLARY_ID_TO_TRAIN_ID,
        L.MAPILLARY_COLOR_TO_TRAIN_ID,
        num_ids=len(L.MAPILLARY_CLASSES),
        known_colors=tuple(c for _, c in L.MAPILLARY_CLASSES),
    ),
    "idd": _TRAIN_ID_FMT,
}

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_JPEG_SIG = b"\xff\xd8"
_JPEG_TAIL = 4096  # bytes searched for the JPEG end marker
# Samples per pixel of each PNG colour type (0 grey, 2 RGB, 3 palette, 4 grey + alpha, 6 RGBA; others invalid).
_PNG_CHANNELS = (1, 0, 3, 1, 2, 0, 4)
# Bytes a PNG may hold beyond twice its pixels' raw size (ancillary chunks: palette, ICC profile, text, EXIF).
# Deflate never grows data by more than 0.1 %, so a file beyond the bound holds compressed data its image
# cannot use: TensorFlow's decoder would inflate all of it (1 GiB of zeros, a 1 MB file, takes 8 s) into a
# buffer of the declared size, and return the image.
_PNG_SLACK = 64 << 10


def _png_byte_limit(width, height, depth, colour_type):
    """The largest PNG file a `width` x `height` image of this bit depth and colour type needs (see `_PNG_SLACK`)."""
    channels = _PNG_CHANNELS[colour_type] if colour_type < len(_PNG_CHANNELS) else 4
    raw = height * (1 + (width * max(channels, 1) * depth + 7) // 8)  # one filter byte per row
    return 2 * raw + _PNG_SLACK


def _too_large_message(path, width, height, limit):
    return (
        f"{path!r} declares {width}x{height} pixels (width x height), more than the limit of {limit} pixels "
        f"({config_lib.MAX_IMAGE_PIXELS_VARIABLE}); refused before decoding: shrink the image, or raise "
        f"{config_lib.MAX_IMAGE_PIXELS_VARIABLE} if it is meant to be that large"
    )


def _bomb_message(path, size, width, height, limit):
    return (
        f"{path!r} holds {size} bytes, more than a {width}x{height} PNG can need ({limit}): compressed data its "
        "image cannot use (a decompression bomb, or a damaged file); refused before decoding: re-encode it or remove it"
    )


def _png_bit_depth(data):
    """Bit depth byte of a PNG's IHDR (offset 24), as int32; 8 if the string is too short."""
    n = tf.strings.length(data)
    byte = tf.strings.substr(data, tf.minimum(24, tf.maximum(n - 1, 0)), 1)
    return tf.cast(tf.io.decode_raw(byte, tf.uint8)[0], tf.int32)


def _structure_ok(data, allow_jpeg):
    """True if `data` looks like a complete PNG (signature + final IEND, width and height not 0) or JPEG
    (SOI + EOI in the tail)."""
    n = tf.strings.length(data)
    head8 = tf.strings.substr(data, 0, 8)
    is_png = tf.equal(head8, _PNG_SIG)
    png_end = tf.equal(tf.strings.substr(data, tf.maximum(n - 8, 0), 4), b"IEND")
    # IHDR width and height (bytes 16..23); zero-padded so that short strings cannot index out of range
    dims = tf.io.decode_raw(tf.strings.substr(tf.strings.join([data, b"\0" * 24]), 16, 8), tf.uint8)
    has_pixels = tf.reduce_any(dims[:4] > 0) & tf.reduce_any(dims[4:] > 0)
    png_ok = is_png & png_end & (n >= 57) & has_pixels
    if not allow_jpeg:
        return png_ok
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 2), _JPEG_SIG)
    # Entropy-coded data never holds FF D9 (FF is stuffed), so an end marker in the last 4 KiB means the
    # file is complete; 4 KiB tolerates encoders' padding after it.
    tail = tf.io.decode_raw(tf.strings.substr(data, tf.maximum(n - _JPEG_TAIL, 0), _JPEG_TAIL), tf.uint8)
    eoi = tf.reduce_any((tail[:-1] == 0xFF) & (tail[1:] == 0xD9))
    jpeg_ok = is_jpeg & eoi & (n >= 4)
    return png_ok | jpeg_ok


def _big_endian(data, offset, length):
    """The unsigned big-endian integer of `length` bytes at `offset` of a string tensor, as int64 (0 past its end)."""
    offset = tf.minimum(tf.cast(offset, tf.int64), _length(data))
    piece = tf.strings.join([tf.strings.substr(data, offset, tf.constant(length, tf.int64)), b"\0" * length])
    digits = tf.cast(tf.io.decode_raw(tf.strings.substr(piece, 0, length), tf.uint8), tf.int64)
    return tf.reduce_sum(digits * tf.constant([256 ** (length - 1 - i) for i in range(length)], tf.int64))


def _length(data):
    return tf.cast(tf.strings.length(data), tf.int64)


def _jpeg_frame_size_op(data):
    """int64 [height, width] of a JPEG's frame header (SOFn), found by following the segment lengths from the start
    as `_jpeg_frame_size` does, in TF ops (a few iterations: one per segment before the frame header); [-1, -1]
    when the image data, the end of the file or bytes that are not a marker come first."""
    n = _length(data)

    def searching(position, size):
        return size[0] == -2

    def step(position, size):
        marker, length = _big_endian(data, position + 1, 1), _big_endian(data, position + 2, 2)
        standalone = (marker == 0x01) | (marker == 0xD8) | ((marker >= 0xD0) & (marker <= 0xD7))
        fill = marker == 0xFF
        frame = (marker >= 0xC0) & (marker <= 0xCF) & (marker != 0xC4) & (marker != 0xC8) & (marker != 0xCC)
        lost = (
            (position + 9 > n)
            | (_big_endian(data, position, 1) != 0xFF)
            | (marker == 0xDA)
            | (marker == 0xD9)
            | (~standalone & ~fill & ~frame & (length < 2))
        )
        found = tf.stack([_big_endian(data, position + 5, 2), _big_endian(data, position + 7, 2)])
        size = tf.where(lost, tf.constant([-1, -1], tf.int64), tf.where(frame, found, size))
        advance = tf.where(fill, tf.constant(1, tf.int64), tf.where(standalone, tf.constant(2, tf.int64), 2 + length))
        return position + advance, size

    start = (tf.constant(2, tf.int64), tf.constant([-2, -2], tf.int64))
    return tf.while_loop(searching, step, start)[1]


def _declared_size(data, allow_jpeg):
    """int64 [height, width] that a PNG's IHDR or a JPEG's frame header declares, read without decoding (TF ops).
    A JPEG whose frame header `_jpeg_frame_size_op` cannot reach is left to `tf.io.extract_jpeg_shape` (libjpeg's
    header reader, which also allocates nothing but does not name the file when it fails)."""
    png = tf.stack([_big_endian(data, 20, 4), _big_endian(data, 16, 4)])
    if not allow_jpeg:
        return png

    def jpeg():
        size = _jpeg_frame_size_op(data)
        return tf.cond(size[0] >= 0, lambda: size, lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64))

    is_png = tf.equal(tf.strings.substr(data, 0, 8), _PNG_SIG)
    return tf.cond(is_png, lambda: png, jpeg)


def _assert(ok, message):
    """``tf.debugging.Assert(ok, [message()])``: a plain op (string data needs no guarding `tf.cond`, which in a
    tf.data function costs more than building the message for every file)."""
    return tf.debugging.Assert(ok, [message()], summarize=1)


def _declared_size_check(data, path, size, allow_jpeg):
    """An assertion that the declared `size` is within the pixel limit and, for a PNG, that the file is no larger
    than its pixels can need (`_png_byte_limit`): TF ops, run before anything is decoded."""
    limit = config_lib.max_image_pixels()
    height, width = size[0], size[1]
    # in float64: a hostile IHDR's (2^32 - 1)^2 overflows int64
    within = tf.cast(height, tf.float64) * tf.cast(width, tf.float64) <= float(limit)
    is_png = tf.equal(tf.strings.substr(data, 0, 8), _PNG_SIG)
    depth = _big_endian(data, 24, 1)
    channels = tf.gather(tf.constant(_PNG_CHANNELS + (4,), tf.int64), tf.minimum(_big_endian(data, 25, 1), 7))
    # in float64: exact enough, and no overflow for a size beyond the limit (which is refused first)
    raw = tf.cast(height, tf.float64) * (1.0 + tf.math.ceil(tf.cast(width * channels * depth, tf.float64) / 8.0))
    byte_limit = 2.0 * raw + _PNG_SLACK
    not_bomb = tf.logical_not(is_png) | (tf.cast(_length(data), tf.float64) <= byte_limit)
    variable = config_lib.MAX_IMAGE_PIXELS_VARIABLE

    def declared():
        return [tf.strings.as_string(width), "x", tf.strings.as_string(height)]

    def too_large():
        return tf.strings.join(
            ["mgml_tf.data: '", path, "' declares ", *declared(), " pixels (width x height), more than the limit of ",
             str(limit), f" pixels ({variable}); refused before decoding: shrink the image, or raise {variable} if it "
             "is meant to be that large"]
        )  # fmt: skip

    def bomb():
        return tf.strings.join(
            ["mgml_tf.data: '", path, "' holds ", tf.strings.as_string(_length(data)), " bytes, more than a ",
             *declared(), " PNG can need (", tf.strings.as_string(tf.cast(byte_limit, tf.int64)), "): compressed data "
             "its image cannot use (a decompression bomb, or a damaged file); refused before decoding: re-encode it "
             "or remove it"]
        )  # fmt: skip

    with tf.control_dependencies([_assert(within, too_large)]):
        return _assert(not_bomb, bomb)


def _read_checked(path, allow_jpeg):
    """(bytes, int64 [height, width] declared) of an image or label file, checked before any decoding: its
    structure (signature, end marker, not 0x0), then its declared size (`_declared_size_check`)."""
    data = tf.io.read_file(path)
    ok = _structure_ok(data, allow_jpeg)
    what = "PNG/JPEG" if allow_jpeg else "PNG"

    def message():
        return tf.strings.join(
            [f"mgml_tf.data: corrupt, truncated, empty or non-{what} file '", path, "'; re-extract it, or load the "
             "domain with check_files=True / skip_bad=True"]
        )  # fmt: skip

    with tf.control_dependencies([_assert(ok, message)]):
        size = _declared_size(data, allow_jpeg)
        size_check = _declared_size_check(data, path, size, allow_jpeg)
    with tf.control_dependencies([size_check]):
        return tf.identity(data), tf.identity(size)


def decode_image(data):
    """uint8 [H, W, 3] from PNG (8/16-bit, grey/palette/RGB/RGBA) or JPEG bytes, TF ops.

    Grey images are replicated to 3 channels, an alpha channel is dropped (the colour is kept whatever the
    alpha), 16-bit samples are scaled to 8 bits (round(v * 255 / 65535))."""
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_label_raw(data, fmt):
    """The label PNG as stored, before mapping: [H, W, C] (uint8, or int32 for 16-bit SYNTHIA), TF ops.

    Cropping this and then calling `raw_to_train_ids` equals cropping the mapped label (nearest
    sampling), and maps far fewer pixels: the training pipeline does that.
    """
    if fmt.kind == "ids":

        def sixteen_ids():  # ids are read exactly, not scaled to 8 bits; ids above 255 become ignore
            return tf.cast(tf.minimum(tf.io.decode_png(data, channels=1, dtype=tf.uint16), 255), tf.uint8)

        raw = tf.cond(_png_bit_depth(data) == 16, sixteen_ids, lambda: tf.io.decode_png(data, channels=1))
        raw.set_shape([None, None, 1])
    elif fmt.kind == "ids16":

        def sixteen():
            return tf.cast(tf.io.decode_png(data, channels=0, dtype=tf.uint16)[..., :1], tf.int32)

        def eight():
            return tf.cast(tf.io.decode_png(data, channels=0, dtype=tf.uint8)[..., :1], tf.int32)

        raw = tf.cond(_png_bit_depth(data) == 16, sixteen, eight)
        raw.set_shape([None, None, 1])
    elif fmt.kind == "ids_or_colors":

        def sixteen():  # grey: ids read exactly (above 255: ignore); colours: scaled to 8 bits
            v = tf.io.decode_png(data, channels=0, dtype=tf.uint16)
            return tf.cond(
                tf.shape(v)[-1] <= 2,
                lambda: tf.cast(tf.minimum(v, 255), tf.uint8),
                lambda: tf.io.decode_png(data, channels=0),
            )

        # palettes come out as RGB(A); grey as 1-2 channels
        raw = tf.cond(_png_bit_depth(data) == 16, sixteen, lambda: tf.io.decode_png(data, channels=0))
        raw.set_shape([None, None, None])
    else:
        raise ValueError(f"unknown label format kind {fmt.kind!r}")
    return raw


def raw_to_train_ids(raw, fmt):
    """uint8 [H, W] train ids (255 ignore) from a `decode_label_raw` result (or a crop of it), TF ops."""
    if fmt.kind in ("ids", "ids16"):
        out = L.map_ids(raw[..., 0], fmt.id_map)
    else:
        out = tf.cond(
            tf.shape(raw)[-1] <= 2,
            lambda: L.map_ids(raw[..., 0], fmt.id_map),
            lambda: L.map_colours(raw, fmt.color_map),
        )
    out.set_shape([None, None])
    return out


def decode_label(data, fmt):
    """uint8 [H, W] train ids (255 ignore) from label PNG bytes in the given `LabelFormat`, TF ops."""
    return raw_to_train_ids(decode_label_raw(data, fmt), fmt)


def _read_same_size(image_path, label_path):
    """(image bytes, label bytes) of a pair whose files passed `_read_checked` and whose declared sizes agree;
    a mismatch is refused from the headers, before either file is decoded, naming both files and sizes."""
    image_data, image_size = _read_checked(image_path, allow_jpeg=True)
    label_data, label_size = _read_checked(label_path, allow_jpeg=False)
    same = tf.reduce_all(tf.equal(image_size, label_size))

    def shown(size):
        return [tf.strings.as_string(size[0]), "x", tf.strings.as_string(size[1])]

    def message():
        return tf.strings.join(
            ["mgml_tf.data: image and label sizes differ: image '", image_path, "' is ", *shown(image_size),
             " but label '", label_path, "' is ", *shown(label_size), " (height x width); fix or remove the pair, "
             "or load the domain with skip_bad=True"]
        )  # fmt: skip

    with tf.control_dependencies([_assert(same, message)]):
        return tf.identity(image_data), tf.identity(label_data)


def read_pair(image_path, label_path, fmt):
    """(uint8 image [H,W,3], uint8 train ids [H,W]) for one pair, in TF ops (usable inside tf.data).

    Structural problems (truncation, wrong format), a declared size over the pixel limit, a PNG larger than its
    pixels can need, and a size mismatch raise `InvalidArgumentError` naming the file(s), before decoding.
    """
    image_data, label_data = _read_same_size(image_path, label_path)
    return decode_image(image_data), decode_label(label_data, fmt)


def read_pair_raw(image_path, label_path, fmt):
    """(uint8 image [H,W,3], raw label [H,W,C] as stored) with the same checks as `read_pair`."""
    image_data, label_data = _read_same_size(image_path, label_path)
    return decode_image(image_data), decode_label_raw(label_data, fmt)


# ------------------------------------------------------------------------- cheap header checks (Python)
def _header_size(path):
    """(height, width) from a PNG/JPEG header, checked as `_read_checked` checks it in the pipeline: readable, not
    empty, complete, not 0x0, within the pixel limit, a PNG no larger than its pixels can need. Raises
    `CorruptFileError` (`ImageTooLargeError` for the last two); reads the header and the last 4 KiB only."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            f.seek(max(size - _JPEG_TAIL, 0))
            tail = f.read()
            if head.startswith(_JPEG_SIG) and b"\xff\xd9" in tail:
                hw = _jpeg_frame_size(f, path)
    except OSError as e:
        reason = e.strerror or str(e)
        raise CorruptFileError(f"cannot read {path!r}: {reason}; check the file and its permissions") from None
    if size == 0:
        raise CorruptFileError(f"{path!r} is empty (0 bytes); re-extract or re-encode it, or remove it")
    if head.startswith(_PNG_SIG):
        if len(head) < 33 or head[12:16] != b"IHDR" or b"IEND" not in tail[-12:]:
            raise CorruptFileError(f"truncated or corrupt PNG {path!r}; re-extract or re-encode it, or remove it")
        w, h, depth, colour_type = struct.unpack(">IIBB", head[16:26])
        if not (w and h):
            raise CorruptFileError(f"{path!r} has no pixels ({w}x{h} PNG); re-encode it or remove it")
        _check_pixels(path, w, h)
        byte_limit = _png_byte_limit(w, h, depth, colour_type)
        if size > byte_limit:
            raise ImageTooLargeError(_bomb_message(path, size, w, h, byte_limit))
        return h, w
    if head.startswith(_JPEG_SIG):
        if b"\xff\xd9" not in tail:
            raise CorruptFileError(f"truncated JPEG {path!r} (no end marker); re-extract or re-encode it, or remove it")
        h, w = hw
        if not (w and h):
            raise CorruptFileError(f"{path!r} has no pixels ({w}x{h} JPEG); re-encode it or remove it")
        _check_pixels(path, w, h)
        return h, w
    raise CorruptFileError(f"{path!r} is neither PNG nor JPEG; convert it to PNG or remove it")


def _check_pixels(path, width, height):
    limit = config_lib.max_image_pixels()
    if width * height > limit:
        raise ImageTooLargeError(_too_large_message(path, width, height, limit))


_JPEG_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}  # markers without a length: TEM, SOI, RST0-7
_JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0-15 (not DHT, JPG, DAC)


def _jpeg_frame_size(f, path):
    """(height, width) of the JPEG frame header (SOFn) of the open file `f`, found by following the segment
    lengths from the start (seeks, no reading of segment bodies: an EXIF block of any size is stepped over).
    Bytes between segments are skipped as libjpeg skips them. Raises `CorruptFileError` when the image data
    (SOS) or the end comes before a frame header."""
    position = 2
    while True:
        f.seek(position)
        head = f.read(9)
        if len(head) < 4:
            break
        if head[0] != 0xFF:  # stray bytes: on to the next 0xFF
            f.seek(position)
            block = f.read(1 << 16)
            skip = block.find(b"\xff")
            if skip < 0:
                position += len(block)
                if len(block) < 1 << 16:
                    break
                continue
            position += skip
            continue
        marker = head[1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in _JPEG_STANDALONE:
            position += 2
        elif marker in _JPEG_FRAMES:
            if len(head) < 9:
                break
            height, width = struct.unpack(">HH", head[5:9])
            return height, width
        elif marker in (0xDA, 0xD9):  # image data or the end before any frame header
            break
        else:
            length = struct.unpack(">H", head[2:4])[0]
            if length < 2:
                break
            position += 2 + length
    raise CorruptFileError(f"JPEG {path!r} has no frame header before its image data; re-encode it or remove it")


def check_image_file(path):
    """Cheap check of one PNG/JPEG file without decoding it: readable, not empty, signature, end marker,
    width and height not 0, the declared width x height within `config.max_image_pixels()`, a PNG no larger than
    its pixels can need. Returns ``(height, width)``; raises `CorruptFileError` (`ImageTooLargeError` for the
    size limits) with a one-line message naming the file and what to do."""
    return _header_size(os.fspath(path))


# ------------------------------------------------------------------------------------------ symlink loops
def _loop_message(link, target):
    return (
        f"symlink loop: {link!r} points to {target!r}, a folder that contains it, so a listing that followed it "
        "would never end; remove the link"
    )


def symlink_loop(folder):
    """``(link, target)`` of the first entry of `folder` (sorted) that is a symlink to `folder` itself or to a
    folder above it, or None. The loaders' patterns reach one folder level below a layout folder (Cityscapes'
    cities, IDD's sequences) and refuse such a link there."""
    real = os.path.realpath(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return None
    for entry in entries:
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if real == target or real.startswith(target.rstrip(os.sep) + os.sep):
                return entry.path, target
    return None


# ---------------------------------------------------------------------------------------------- Domain
class Domain:
    """One dataset split: sorted (image, label) file pairs and how to read them.

    Attributes: `name`, `root`, `split`, `pairs` (sorted list of (image_path, label_path)), `label_format`,
    `skipped` (list of (image_path, label_path, reason) dropped by `skip_bad=True`).
    """

    def __init__(self, name, root, split, pairs, label_format=None, skipped=(), skip_bad=False):
        self.name = name
        self.root = root
        self.split = split
        self.pairs = sorted(pairs)
        self.label_format = label_format or LABEL_FORMATS[name]
        self.skipped = list(skipped)
        self.skip_bad = skip_bad

    def __len__(self):
        return len(self.pairs)

    def __repr__(self):
        extra = f", skipped={len(self.skipped)}" if self.skipped else ""
        return f"Domain({self.name!r}, root={self.root!r}, split={self.split!r}, pairs={len(self)}{extra})"

    @property
    def image_paths(self):
        return [p[0] for p in self.pairs]

    @property
    def label_paths(self):
        return [p[1] for p in self.pairs]

    def read(self, image_path, label_path):
        """TF-op read of one pair: (uint8 [H,W,3], uint8 [H,W] train ids)."""
        return read_pair(image_path, label_path, self.label_format)

    def read_raw(self, image_path, label_path):
        """TF-op read of one pair with the label as stored ([H,W,C]); map it with `self.label_map`."""
        return read_pair_raw(image_path, label_path, self.label_format)

    def label_map(self, raw):
        """Raw label (or a crop of it) [h,w,C] -> uint8 train ids [h,w], TF ops."""
        return raw_to_train_ids(raw, self.label_format)

    def as_dataset(self, num_parallel_calls=AUTOTUNE, deterministic=True):
        """`tf.data.Dataset` of (uint8 image [H,W,3], uint8 train ids [H,W]) in file order, unaugmented."""
        ds = tf.data.Dataset.from_tensor_slices((self.image_paths, self.label_paths))
        ds = ds.map(self.read, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
        if self.skip_bad:
            ds = ds.ignore_errors(log_warning=True)
        return ds


# ------------------------------------------------------------------------------------------- layouts
_LAYOUTS = {
    "gtav": "ROOT/images/*.png with ROOT/labels/*.png (same file names; GTAV as distributed)",
    "synthia": "ROOT/RGB/*.png with ROOT/GT/LABELS/*.png (SYNTHIA RAND_CITYSCAPES as distributed)",
    "cityscapes": (
        "ROOT/leftImg8bit/{split}/CITY/*_leftImg8bit.png with ROOT/gtFine/{split}/CITY/*_gtFine_labelIds.png"
    ),
    "bdd100k": (
        "ROOT/images/10k/{split}/*.jpg with ROOT/labels/sem_seg/masks/{split}/*.png "
        "(or the older ROOT/seg/images/{split}/*.jpg with ROOT/seg/labels/{split}/*_train_id.png)"
    ),
    "mapillary": (
        "ROOT/{msplit}/images/*.jpg with ROOT/{msplit}/labels/*.png "
        "(or ROOT/{msplit}/v1.2/labels/*.png of the v2.0 package)"
    ),
    "idd": (
        "ROOT/leftImg8bit/{split}/SEQ/*_leftImg8bit.png with "
        "ROOT/gtFine/{split}/SEQ/*_gtFine_labelcsTrainIds.png (run IDD's createLabels first)"
    ),
}
#: Mapillary Vistas' split folders: the split names the loaders accept -> the folder of that split.
MAPILLARY_SPLITS = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "validation": "validation",
    "test": "testing",
    "testing": "testing",
}


@dataclasses.dataclass(frozen=True)
class FileLayout:
    """Where one split of a dataset keeps its files, in the layout of its published release.

    `image_dir`, `label_dir`: folders relative to the root, "/"-separated, with "{split}" for the split's
    folder; files may sit in sub-folders of them (Cityscapes cities, IDD sequences). `image_suffix`,
    `label_suffix`: how the file names end; an image and its label share the rest of the path.
    `split_folders`: split name -> folder name where they differ (Mapillary). The listers also accept the
    variants `_LAYOUTS` describes (GTAV JPEG images, the older BDD100K tree, Mapillary v2.0's v1.2 labels,
    IDD JPEG images); the synthetic generator (`mgml_tf.synthetic`) writes exactly this layout.
    """

    image_dir: str
    label_dir: str
    image_suffix: str
    label_suffix: str
    split_folders: dict = None

    def split_folder(self, split):
        """The folder name of `split` (the split name itself unless `split_folders` renames it)."""
        return (self.split_folders or {}).get(split, split)

    def dirs(self, root, split):
        """(image folder, label folder) of `split` under `root`."""
        folder = self.split_folder(split)
        return tuple(os.path.join(root, *d.format(split=folder).split("/")) for d in (self.image_dir, self.label_dir))


#: The published layout of each of `KNOWN_DATASETS` (the loaders list these; the generator writes them).
FILE_LAYOUTS = {
    "gtav": FileLayout("images", "labels", ".png", ".png"),
    "synthia": FileLayout("RGB", "GT/LABELS", ".png", ".png"),
    "cityscapes": FileLayout("leftImg8bit/{split}", "gtFine/{split}", "_leftImg8bit.png", "_gtFine_labelIds.png"),
    "bdd100k": FileLayout("images/10k/{split}", "labels/sem_seg/masks/{split}", ".jpg", ".png"),
    "mapillary": FileLayout("{split}/images", "{split}/labels", ".jpg", ".png", MAPILLARY_SPLITS),
    "idd": FileLayout("leftImg8bit/{split}", "gtFine/{split}", "_leftImg8bit.png", "_gtFine_labelcsTrainIds.png"),
}


def _layout(name, root, split):
    text = _LAYOUTS[name].replace("ROOT", root).replace("{split}", split)
    return text.replace("{msplit}", FILE_LAYOUTS["mapillary"].split_folder(split))


def _need_dir(name, root, split, path):
    if not os.path.isdir(path):
        raise DatasetNotFoundError(f"{name}: folder {path!r} not found; expected {_layout(name, root, split)}")


def _glob(pattern):
    return sorted(glob.glob(pattern))


def _by_key(paths, base, suffix):
    """Map key (path relative to `base` without `suffix`) -> path."""
    out = {}
    for p in paths:
        rel = os.path.relpath(p, base)
        if suffix and rel.endswith(suffix):
            rel = rel[: -len(suffix)]
        out[rel] = p
    return out


def _pair(name, root, split, images, labels, image_hint, label_hint):
    """Pair two key->path dicts; raise NoFilesFoundError / UnpairedFilesError with the first few names."""
    if not images and not labels:
        raise NoFilesFoundError(f"{name}: no files found for split {split!r}; expected {_layout(name, root, split)}")
    if not images:
        raise NoFilesFoundError(
            f"{name}: found {len(labels)} labels but no images ({image_hint}); expected {_layout(name, root, split)}"
        )
    if not labels:
        raise NoFilesFoundError(
            f"{name}: found {len(images)} images but no labels ({label_hint}); expected {_layout(name, root, split)}"
        )
    no_label = sorted(set(images) - set(labels))
    no_image = sorted(set(labels) - set(images))
    if no_label or no_image:
        parts = []
        if no_label:
            parts.append(f"{len(no_label)} image(s) without a label: {_names([images[k] for k in no_label])}")
        if no_image:
            parts.append(f"{len(no_image)} label(s) without an image: {_names([labels[k] for k in no_image])}")
        raise UnpairedFilesError(f"{name}: " + "; ".join(parts) + "; complete the extraction or remove the strays")
    return [(images[k], labels[k]) for k in sorted(images)]


def _read_split_list(name, path):
    if not os.path.isfile(path):
        raise SplitListError(
            f"{name}: split list {path!r} not found; give a text file of file stems, "
            "one per line, or split_list=None to use every file"
        )
    with open(path) as f:
        stems = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    return [os.path.splitext(s)[0] for s in stems]


def _apply_split_list(name, pairs_by_key, split_list):
    stems = _read_split_list(name, split_list)
    missing = [s for s in stems if s not in pairs_by_key]
    if missing:
        raise SplitListError(
            f"{name}: split list {split_list!r} names {len(missing)} file(s) not in the "
            f"dataset: {_names(missing)}; fix the list or the dataset root"
        )
    if not stems:
        raise SplitListError(f"{name}: split list {split_list!r} is empty")
    return [pairs_by_key[s] for s in dict.fromkeys(stems)]


def _flat_pairs(name, root, split, split_list, image_dir, label_dir, image_exts, label_ext):
    """GTAV / SYNTHIA: flat folders (or their {split}/ subfolders when present), optional split list."""
    _need_dir(name, root, split, image_dir)
    _need_dir(name, root, split, label_dir)
    if os.path.isdir(os.path.join(image_dir, split)) and os.path.isdir(os.path.join(label_dir, split)):
        image_dir, label_dir = os.path.join(image_dir, split), os.path.join(label_dir, split)
    images = {}
    for ext in image_exts:
        images.update({os.path.splitext(os.path.basename(p))[0]: p for p in _glob(os.path.join(image_dir, "*" + ext))})
    labels = {os.path.splitext(os.path.basename(p))[0]: p for p in _glob(os.path.join(label_dir, "*" + label_ext))}
    if split_list is not None:
        keep = set(_read_split_list(name, split_list))
        images = {k: v for k, v in images.items() if k in keep}
        labels = {k: v for k, v in labels.items() if k in keep}
        missing = sorted(keep - set(images))
        if missing:
            raise SplitListError(
                f"{name}: split list {split_list!r} names {len(missing)} file(s) with no "
                f"image in {image_dir!r}: {_names(missing)}; fix the list or the root"
            )
    return _pair(name, root, split, images, labels, image_dir, label_dir)


def _list_gtav(root, split, split_list):
    fl = FILE_LAYOUTS["gtav"]
    return _flat_pairs(
        "gtav", root, split, split_list, *fl.dirs(root, split), (fl.image_suffix, ".jpg"), fl.label_suffix
    )


def _list_synthia(root, split, split_list):
    fl = FILE_LAYOUTS["synthia"]
    return _flat_pairs("synthia", root, split, split_list, *fl.dirs(root, split), (fl.image_suffix,), fl.label_suffix)


def _city_style(name, root, split, split_list, extra_image_suffixes=()):
    fl = FILE_LAYOUTS[name]
    idir, ldir = fl.dirs(root, split)
    label_suffix, image_suffixes = fl.label_suffix, (fl.image_suffix, *extra_image_suffixes)
    _need_dir(name, root, split, idir)
    _need_dir(name, root, split, ldir)
    for folder in (idir, ldir):  # the pattern descends one level: into a link to the folder or above it too
        loop = symlink_loop(folder)
        if loop:
            raise SymlinkLoopError(f"{name}: {_loop_message(*loop)}")
    images = {}
    for suf in image_suffixes:
        images.update(_by_key(_glob(os.path.join(idir, "*", "*" + suf)), idir, suf))
    labels = _by_key(_glob(os.path.join(ldir, "*", "*" + label_suffix)), ldir, label_suffix)
    pairs = _pair(name, root, split, images, labels, idir, ldir)
    if split_list is not None:
        by_stem = {os.path.basename(i).split("_leftImg8bit")[0]: (i, l) for i, l in pairs}
        pairs = _apply_split_list(name, by_stem, split_list)
    return pairs


def _list_cityscapes(root, split, split_list):
    return _city_style("cityscapes", root, split, split_list)


def _list_idd(root, split, split_list):
    return _city_style("idd", root, split, split_list, ("_leftImg8bit.jpg",))


def _list_bdd100k(root, split, split_list):
    name = "bdd100k"
    fl = FILE_LAYOUTS[name]
    if os.path.isdir(os.path.join(root, "images", "10k")) or not os.path.isdir(os.path.join(root, "seg")):
        idir, ldir = fl.dirs(root, split)
        lsuf = fl.label_suffix
    else:  # the older seg/ tree
        idir = os.path.join(root, "seg", "images", split)
        ldir = os.path.join(root, "seg", "labels", split)
        lsuf = "_train_id.png"
    _need_dir(name, root, split, idir)
    _need_dir(name, root, split, ldir)
    images = _by_key(_glob(os.path.join(idir, "*" + fl.image_suffix)), idir, fl.image_suffix)
    labels = _by_key(_glob(os.path.join(ldir, "*" + lsuf)), ldir, lsuf)
    pairs = _pair(name, root, split, images, labels, idir, ldir)
    if split_list is not None:
        pairs = _apply_split_list(name, {os.path.basename(i)[:-4]: (i, l) for i, l in pairs}, split_list)
    return pairs


def _list_mapillary(root, split, split_list):
    name = "mapillary"
    fl = FILE_LAYOUTS[name]
    msplit = fl.split_folder(split)
    idir, ldir = fl.dirs(root, split)
    if not os.path.isdir(ldir) and os.path.isdir(os.path.join(root, msplit, "v1.2", "labels")):
        ldir = os.path.join(root, msplit, "v1.2", "labels")  # the v2.0 package
    _need_dir(name, root, split, idir)
    _need_dir(name, root, split, ldir)
    images = _by_key(_glob(os.path.join(idir, "*" + fl.image_suffix)), idir, fl.image_suffix)
    labels = _by_key(_glob(os.path.join(ldir, "*" + fl.label_suffix)), ldir, fl.label_suffix)
    pairs = _pair(name, root, split, images, labels, idir, ldir)
    if split_list is not None:
        pairs = _apply_split_list(name, {os.path.basename(i)[:-4]: (i, l) for i, l in pairs}, split_list)
    return pairs


_LISTERS = {
    "gtav": _list_gtav,
    "synthia": _list_synthia,
    "cityscapes": _list_cityscapes,
    "bdd100k": _list_bdd100k,
    "mapillary": _list_mapillary,
    "idd": _list_idd,
}


# ------------------------------------------------------------------------------------ file checking
def _check_header(pair):
    """None, or (error class, reason) for a pair whose headers fail `_header_size` or declare different sizes."""
    image_path, label_path = pair
    try:
        isz = _header_size(image_path)
        lsz = _header_size(label_path)
    except CorruptFileError as e:
        return type(e), str(e)
    if isz != lsz:
        return SizeMismatchError, _mismatch_message(image_path, isz, label_path, lsz)
    return None


def _mismatch_message(image_path, image_size, label_path, label_size):
    (ih, iw), (lh, lw) = image_size, label_size
    return f"image {image_path!r} is {ih}x{iw} but label {label_path!r} is {lh}x{lw} (height x width)"


_SHOWN_VALUES = 5  # how many unknown label values an error message lists


def unknown_label_values(data, fmt):
    """Values of a label PNG (bytes) that are neither a class id nor ignore in `fmt`'s label map: a sorted
    list of ints (ids) or (r, g, b) tuples (colours); empty when every value is known. NumPy, eager."""
    import numpy as np

    depth = int(_png_bit_depth(data))
    raw = tf.io.decode_png(data, channels=0, dtype=tf.uint16 if depth == 16 else tf.uint8).numpy()
    colour = fmt.kind == "ids_or_colors" and raw.shape[-1] >= 3
    if not colour:
        channel = (
            raw[..., 0] if fmt.kind != "ids" or raw.shape[-1] <= 2 else decode_label_raw(data, fmt).numpy()[..., 0]
        )
        values = np.unique(channel).astype(np.int64)
        known = np.arange(fmt.num_ids).tolist() + [L.IGNORE_ID]
        return values[~np.isin(values, known)].tolist()
    rgb = raw[..., :3].astype(np.int64)
    if depth == 16:
        rgb = (rgb * 255 + 32767) // 65535
    keys = np.unique(L.color_keys(rgb))
    known_keys = L.color_keys(list(fmt.known_colors or fmt.color_map))
    return [(int(k) >> 16, (int(k) >> 8) & 255, int(k) & 255) for k in keys[~np.isin(keys, known_keys)]]


def _unknown_values_reason(name, path, fmt, values):
    shown = ", ".join(str(v) for v in values[:_SHOWN_VALUES]) + (
        f" and {len(values) - _SHOWN_VALUES} more" if len(values) > _SHOWN_VALUES else ""
    )
    if isinstance(values[0], tuple):
        expected = f"the {len(fmt.known_colors or fmt.color_map)} colours of its label map"
    else:
        expected = f"ids 0..{fmt.num_ids - 1} or 255"
    return (
        f"label {path!r} holds value(s) {shown} that are neither class ids nor ignore for {name} "
        f"(expected {expected}); is it the right label file for this dataset?"
    )


def _check_decode(pair, fmt, name="this dataset"):
    image_path, label_path = pair
    problem = _check_header(pair)  # the declared sizes first: nothing too large is decoded
    if problem:
        return problem
    decoded = []
    for kind, path in (("image", image_path), ("label", label_path)):
        try:
            data = tf.io.read_file(path)
            if not bool(_structure_ok(data, allow_jpeg=kind == "image")):
                return f"truncated, empty or corrupt {kind} {path!r} (bad signature, missing end marker or 0x0)"
            decoded.append(decode_image(data) if kind == "image" else decode_label(data, fmt))
            if kind == "label":
                unknown = unknown_label_values(data, fmt)
        except tf.errors.OpError as e:
            return f"corrupt {kind} {path!r}: " + e.message.strip().splitlines()[0]
    image, label = decoded
    if tuple(image.shape[:2]) != tuple(label.shape[:2]):
        return SizeMismatchError, _mismatch_message(image_path, image.shape[:2], label_path, label.shape[:2])
    if unknown:
        return UnknownLabelValueError, _unknown_values_reason(name, label_path, fmt, unknown)
    return None


def _check_all(name, pairs, fn, skip_bad):
    workers = max(1, min(len(pairs), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(fn, pairs))
    classes = [r[0] if isinstance(r, tuple) else None for r in reasons]
    reasons = [r[1] if isinstance(r, tuple) else r for r in reasons]
    bad = [(p[0], p[1], r) for p, r in zip(pairs, reasons) if r is not None]
    if bad and not skip_bad:
        first = bad[0][2]
        more = f" ({len(bad) - 1} more bad pair(s))" if len(bad) > 1 else ""
        cls = next(c for c, r in zip(classes, reasons) if r is not None) or (
            SizeMismatchError if " but label " in first else CorruptFileError
        )
        raise cls(f"{name}: {first}{more}; fix or remove the file(s), or load with skip_bad=True")
    good = [p for p, r in zip(pairs, reasons) if r is None]
    return good, bad


# ------------------------------------------------------------------------------------------ load_domain
def load_domain(
    name: str,
    root: str | os.PathLike[str],
    split: str = "train",
    split_list: str | os.PathLike[str] | None = None,
    check_files: bool = False,
    skip_bad: bool = False,
) -> Domain:
    """List one dataset split in its published layout and return a `Domain`.

    Args:
      name: one of `KNOWN_DATASETS` (case-insensitive).
      root: the dataset's top folder (see docs/DATA.md for each layout).
      split: "train", "val" or "test" (Mapillary also accepts "training"/"validation"). For GTAV and
        SYNTHIA, whose releases are flat, `split` selects `images/{split}/` style subfolders when they
        exist; otherwise all files are used unless `split_list` restricts them.
      split_list: optional text file of file stems (one per line; extensions ignored) selecting the files.
      check_files: decode every file now (in parallel threads) and raise on the first bad pair.
      skip_bad: drop bad pairs instead of raising; they are listed in `domain.skipped` and logged. Without
        `check_files`, only PNG/JPEG headers and end markers are checked up front (cheap), and pairs that
        still fail while the pipeline runs are dropped by `ignore_errors`.
    """
    key = str(name).strip().lower()
    if key not in _LISTERS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)}")
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"{key}: dataset root {root!r} not found; expected {_layout(key, root, split)}")
    if split_list is not None:
        split_list = os.fspath(split_list)
    pairs = _LISTERS[key](root, split, split_list)
    fmt = LABEL_FORMATS[key]
    skipped = []
    if check_files:
        pairs, skipped = _check_all(key, pairs, lambda p: _check_decode(p, fmt, key), skip_bad)
    elif skip_bad:
        pairs, skipped = _check_all(key, pairs, _check_header, skip_bad)
    if skipped:
        _log.warning(
            "%s: skipped %d of %d pair(s) with bad files; first: %s",
            key,
            len(skipped),
            len(skipped) + len(pairs),
            skipped[0][2],
        )
    if not pairs:
        raise NoFilesFoundError(
            f"{key}: every pair under {root!r} was bad ({len(skipped)} skipped); check the extraction"
        )
    return Domain(key, root, split, pairs, fmt, skipped=skipped, skip_bad=skip_bad)


def parse_domains(spec, split="train", **kwargs):
    """Domains from a `name:root` comma list (the CLI convention), e.g. "gtav:/d/GTAV,synthia:/d/SYN".

    Entries may also be `Domain` objects or (name, root) tuples when `spec` is a list.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        if isinstance(item, Domain):
            out.append(item)
            continue
        if isinstance(item, (tuple, list)):
            name, root = item
        else:
            item = item.strip()
            if not item:
                continue
            if ":" not in item:
                raise UnknownDatasetError(
                    f"domain {item!r} is not of the form name:root; e.g. gtav:/data/GTAV "
                    f"(known names: {', '.join(KNOWN_DATASETS)})"
                )
            name, root = item.split(":", 1)
        out.append(load_domain(name, root, split=split, **kwargs))
    return out
