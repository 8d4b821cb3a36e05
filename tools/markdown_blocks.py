"""Generated blocks inside hand-written Markdown: the text between two marker lines is replaced, the rest kept
(used by tools/study.py and tools/memory_diagnostics.py for docs/RESULTS.md)."""

import os


def replace_block(path, begin, end, block, new_file_text=""):
    """Replaces the text between the ``begin`` and ``end`` lines of ``path`` with ``block`` (the markers are
    appended first if absent; a missing file starts as ``new_file_text``)."""
    text = open(path).read() if os.path.exists(path) else new_file_text
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    if not block.endswith("\n"):
        block += "\n"
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n{block}{end}{tail}")
