"""What ``mgml_tf.predict --input`` names: an image, a folder searched recursively for images, a list file of
images, or a video (``mgml_tf.video``). Everything is listed and checked before anything is written: a
missing list entry is one line naming the list file and line.

Each image gets an output name (its path relative to the folder, or to the list's folder, without the
extension); two images whose outputs would coincide (``a.png`` and ``a.jpg``, or a list naming a file twice)
are refused, as the second would overwrite the first."""

import os

from mgml_tf import video
from mgml_tf.errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
LIST_EXTENSIONS = (".txt", ".lst")


def kind(path):
    """``image``, ``folder``, ``list`` or ``video``; ``UsageError`` for a missing path or another kind of file."""
    if os.path.isdir(path):
        return "folder"
    if not os.path.exists(path):
        raise UsageError(f"--input={path} not found")
    ext = os.path.splitext(path)[1].lower()
    for name, extensions in (("image", IMAGE_EXTENSIONS), ("video", video.VIDEO_EXTENSIONS), ("list", LIST_EXTENSIONS)):
        if ext in extensions:
            return name
    raise UsageError(
        f"--input={path} is not an image ({', '.join(IMAGE_EXTENSIONS)}), a video "
        f"({', '.join(video.VIDEO_EXTENSIONS)}), a list of images ({', '.join(LIST_EXTENSIONS)}, one path per "
        "line) or a folder"
    )


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _refuse_collisions(items, where):
    """``items``: ``[(path, output name, origin)]``; one line naming the first two that share an output."""
    seen = {}
    for path, rel, origin in items:
        key = os.path.splitext(rel)[0]
        if key in seen:
            first = seen[key]
            raise UsageError(
                f"{where}: {first[2]} and {origin} would write the same outputs ({key}_*); "
                "give each image once, under distinct names"
            )
        seen[key] = (path, rel, origin)


def read_list(list_path):
    """``[(path, output name)]`` of a list file: one image path per line, relative to the list's folder (or
    absolute); blank lines and lines starting with ``#`` are skipped. Output names are relative to the
    list's folder, or to the entries' common folder when some lie outside it. A missing entry, or one that is
    not a PNG/JPEG image, is a one-line ``UsageError`` naming ``LIST:LINE``."""
    base = os.path.dirname(os.path.abspath(list_path))
    try:
        with open(list_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"--input={list_path} is not UTF-8 text; give one image path per line") from None
    except OSError as e:
        raise UsageError(f"cannot read --input={list_path}: {e.strerror or e}") from None
    entries = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        full = os.path.normpath(os.path.join(base, os.path.expanduser(text)))
        where = f"{list_path}:{number}"
        if not os.path.exists(full):
            raise UsageError(f"{where}: {text} not found ({full}; paths are relative to the list's folder)")
        if os.path.isdir(full) or not _is_image(full):
            raise UsageError(f"{where}: {text} is not a PNG or JPEG image; list one image per line")
        entries.append((full, where))
    if not entries:
        raise UsageError(f"--input={list_path} names no images (blank lines and # comments only)")
    paths = [p for p, _ in entries]
    inside = all(not os.path.relpath(p, base).startswith(os.pardir + os.sep) for p in paths)
    root = base if inside else os.path.commonpath([os.path.dirname(p) for p in paths])
    items = [(p, os.path.relpath(p, root), where) for p, where in entries]
    _refuse_collisions(items, f"--input={list_path}")
    return [(p, rel) for p, rel, _ in items]


def list_images(path):
    """``[(path, output name)]`` of an image, a folder (every PNG/JPEG below it, sorted) or a list file."""
    what = kind(path)
    if what == "image":
        return [(path, os.path.basename(path))]
    if what == "list":
        return read_list(path)
    if what == "video":
        raise UsageError(f"--input={path} is a video; predict reads it frame by frame")  # the caller's job
    out = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if _is_image(name):
                full = os.path.join(folder, name)
                out.append((full, os.path.relpath(full, path)))
    if not out:
        raise UsageError(f"--input={path} holds no PNG or JPEG images")
    out.sort()
    _refuse_collisions([(p, rel, rel) for p, rel in out], f"--input={path}")
    return out
