"""Generated blocks inside hand-written Markdown: the text between two marker lines is replaced, the rest kept.

The one block writer of the tools (``tools.study`` and ``tools.memory_diagnostics`` for docs/RESULTS.md,
``tools.benchmark`` for docs/BENCHMARKS.md)."""

import os


class MissingMarkersError(ValueError):
    """An existing file lacks the marker lines of its generated block (or has them out of order)."""


def replace_block(path, begin, end, block, new_file_text=None):
    """Replaces the text between the ``begin`` and ``end`` marker lines of ``path`` with ``block``.

    Everything outside the markers is kept, the markers too. A file that does not exist is created from
    ``new_file_text`` (a heading, say) followed by the markers and the block, unless ``new_file_text`` is None;
    an existing file must hold both markers, ``begin`` first, each once: otherwise ``MissingMarkersError``
    says which marker line to add, and nothing is written. The file is replaced atomically.
    """
    if not block.endswith("\n"):
        block += "\n"
    if not os.path.exists(path):
        if new_file_text is None:
            raise FileNotFoundError(f"{path} does not exist (its generated block goes between {begin!r} and {end!r})")
        heading = new_file_text.rstrip("\n")
        text = f"{heading}\n\n{begin}\n{block}{end}\n" if heading else f"{begin}\n{block}{end}\n"
    else:
        with open(path) as f:
            text = f.read()
        counts = {marker: text.count(marker) for marker in (begin, end)}
        problems = [f"{marker!r} occurs {n} times" for marker, n in counts.items() if n != 1]
        if not problems and text.index(begin) > text.index(end):
            problems.append(f"{end!r} comes before {begin!r}")
        if problems:
            raise MissingMarkersError(
                f"{path}: cannot place the generated block: {'; '.join(problems)}. The file needs the line {begin!r} "
                f"and, after it, the line {end!r}, once each; add them where the block belongs."
            )
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = f"{head}{begin}\n{block}{end}{tail}"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
