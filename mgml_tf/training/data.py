"""Domains named on the command line: ``name:root`` lists, and the embedded default ('synthetic').

``synthetic`` expands to every default source style (train split) or target style (val split) of the
``DEFAULT_SUITE`` of the family chosen by ``--synthetic_family`` (``mgml_tf.synthetic.families``: streets or
towns); ``synthetic:STYLE`` names one style; ``synthetic:in_domain`` (targets)
the held-out images of every source style (``--synthetic_num_source_val``, roots ``<style>_val``). The suite
is generated once under ``--synthetic_root`` (into a temporary folder renamed into place, so an interrupted
generation never leaves a half suite that looks complete) and reused while its parameters match.
"""

import json
import os
import shutil
import sys
import time

from mgml_tf.errors import UsageError

_MARKER = "SUITE.json"
IN_DOMAIN = "in_domain"
_HELD_OUT_SUFFIX = "_val"


def _family(fv):
    return getattr(fv, "synthetic_family", "streets") or "streets"


def _num_source_val(fv):
    return int(getattr(fv, "synthetic_num_source_val", 0) or 0)


def _generator(fv):
    """The generator module of ``--synthetic_family``."""
    from mgml_tf.synthetic import families

    family = _family(fv)
    if family not in families.FAMILIES:
        raise UsageError(f"--synthetic_family={family!r} is unknown; valid: {', '.join(families.FAMILIES)}")
    return families.load(family)


def _suite_params(fv):
    params = {
        "num_train": int(fv.synthetic_num_train),
        "num_val": int(fv.synthetic_num_val),
        "height": int(fv.synthetic_height),
        "width": int(fv.synthetic_width),
        "seed": 0,
    }
    # Keys are added only when they differ from the defaults, so suites made before they existed still match.
    if _family(fv) != "streets":
        params["family"] = _family(fv)
    if _num_source_val(fv):
        params["num_source_val"] = _num_source_val(fv)
    return params


def uses_synthetic(*specs):
    return any(item.strip().split(":")[0] == "synthetic" for spec in specs if spec for item in spec.split(","))


def synthetic_suite(fv, generate=True, log=print):
    """``{style: "layout:root"}`` of the default suite under ``--synthetic_root``, generated if absent.

    With held-out source images the held-out roots are included as ``{style}_val`` entries."""
    synthetic = _generator(fv)
    root = os.path.abspath(os.path.expanduser(fv.synthetic_root))
    params = _suite_params(fv)
    marker = os.path.join(root, _MARKER)
    specs = {style: f"{layout}:{os.path.join(root, style)}" for style, layout in synthetic.DEFAULT_SUITE.items()}
    if _num_source_val(fv):
        specs.update(
            {
                style + _HELD_OUT_SUFFIX: f"{layout}:{os.path.join(root, style + _HELD_OUT_SUFFIX)}"
                for style, layout in synthetic.DEFAULT_SUITE.items()
                if style in synthetic.SOURCE_STYLES
            }
        )
    if os.path.exists(marker):
        try:
            with open(marker) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
        if old != params:
            raise UsageError(
                f"--synthetic_root={root} holds a suite made with other parameters ({old}); "
                f"wanted {params}: delete it or choose another --synthetic_root"
            )
        return specs
    if os.path.exists(root) and os.listdir(root):
        raise UsageError(
            f"--synthetic_root={root} exists and is not a generated suite (no {_MARKER}); choose an empty or new folder"
        )
    if not generate:
        raise UsageError(f"no synthetic suite under {root}; run mgml_tf.train with it first")
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    partial = f"{root}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    t0 = time.perf_counter()
    held_out = (
        f", {params['num_source_val']} held-out val images per source style" if params.get("num_source_val") else ""
    )
    log(
        f"generating the embedded default domains ({_family(fv)}) in {root} ({params['num_train']} train images "
        f"per source style, {params['num_val']} val images per target style{held_out}, "
        f"{params['height']}x{params['width']})"
    )
    try:
        synthetic.write_default_suite(
            partial,
            num_train=params["num_train"],
            num_val=params["num_val"],
            seed=params["seed"],
            height=params["height"],
            width=params["width"],
            num_source_val=_num_source_val(fv),
        )
        with open(os.path.join(partial, _MARKER), "w") as f:
            json.dump(params, f)
        if os.path.exists(root):
            os.rmdir(root)  # empty (checked above)
        os.rename(partial, root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    # SYNTHETIC.json files record the partial path in nothing that is read back; specs use the final root.
    log(f"generated in {time.perf_counter() - t0:.1f} s")
    sys.stdout.flush()
    return specs


def expand(spec, role, fv, log=print):
    """The ``name:root`` list of a flag value, with ``synthetic`` items expanded (generating the suite)."""
    items = [s.strip() for s in (spec or "").split(",") if s.strip()]
    flag = "sources" if role == "source" else "targets"
    for item in items:  # checked before the suite is generated
        if item == f"synthetic:{IN_DOMAIN}":
            if role == "source":
                raise UsageError(
                    f"--sources: synthetic:{IN_DOMAIN} (held-out source images) is for --targets "
                    "only; use synthetic or synthetic:STYLE"
                )
            if not _num_source_val(fv):
                raise UsageError(
                    f"--{flag}: synthetic:{IN_DOMAIN} needs held-out source images; set "
                    "--synthetic_num_source_val=N (N > 0)"
                )
    out = []
    suite = None
    synthetic = None
    for item in items:
        name = item.split(":")[0]
        if name != "synthetic":
            out.append(_with_absolute_list(item, flag))
            continue
        if suite is None:
            synthetic = _generator(fv)
            suite = synthetic_suite(fv, log=log)
        if item == "synthetic":
            styles = synthetic.SOURCE_STYLES if role == "source" else synthetic.TARGET_STYLES
            out.extend(suite[s] for s in synthetic.DEFAULT_SUITE if s in styles)
        elif item == f"synthetic:{IN_DOMAIN}":
            out.extend(suite[s + _HELD_OUT_SUFFIX] for s in synthetic.DEFAULT_SUITE if s in synthetic.SOURCE_STYLES)
        else:
            style = item.split(":", 1)[1]
            if style not in suite:
                raise UsageError(f"unknown synthetic style {style!r}; known: {', '.join(suite)}")
            out.append(suite[style])
    return out


#: The split each flag's domains are read on (and so the split a ``split_list=published`` list is of).
SPLIT_OF_FLAG = {"sources": "train", "targets": "val"}


def _split_list(item, name, flag, split=None):
    """The absolute path of the ``split_list=`` option of a ``name:root:split_list=LIST`` item (None without
    one) for ``split`` (by default the split of ``flag``'s domains); a one-line usage error when there is no
    such list."""
    from mgml_tf.data import splits

    value = splits.parse_spec(item)[2]
    if value is None:
        return None
    try:
        return splits.resolve(value, name, split or SPLIT_OF_FLAG[flag])
    except ValueError as e:
        raise UsageError(f"--{flag}: {item!r}: {e}") from None


def check_specs(specs, flag):
    """Syntax of ``name:root`` and ``name:root:split_list=LIST`` items, their roots and lists (before any
    work)."""
    from mgml_tf.data import splits
    from mgml_tf.data.names import KNOWN_DATASETS

    for item in [s.strip() for s in (specs or "").split(",") if s.strip()]:
        name, root, split_list = splits.parse_spec(item)
        if name == "synthetic":
            if split_list is not None:
                raise UsageError(
                    f"--{flag}: {item!r}: the synthetic domains are generated with their own splits; "
                    "split_list= is for datasets given as name:root"
                )
            continue
        if not root:
            raise UsageError(
                f"--{flag}: {item!r} is not name:root (e.g. gtav:/data/GTAV, "
                f"synthia:/data/SYNTHIA:split_list={splits.PUBLISHED}) or synthetic"
            )
        if name not in KNOWN_DATASETS:
            raise UsageError(f"--{flag}: unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}, synthetic")
        root = os.path.expanduser(root)
        if not os.path.isdir(root):
            raise UsageError(f"--{flag}: dataset root {root} of {name} not found")
        _split_list(item, name, flag)


def _with_absolute_list(item, flag):
    """``item`` with a split list file made absolute (the run's record is read from other folders later);
    ``published`` is kept as the word, resolved where it is read."""
    from mgml_tf.data import splits

    name, root, value = splits.parse_spec(item)
    if value is None or value.strip() == splits.PUBLISHED:
        return item
    return f"{name}:{root}:split_list={_split_list(item, name, flag)}"


def load(specs, split, flag):
    """``Domain`` objects of resolved ``name:root[:split_list=LIST]`` items; dataset errors become one-line
    usage errors."""
    from mgml_tf.data import DataError, load_domain, splits

    domains = []
    for item in specs:
        name, root, _ = splits.parse_spec(item)
        try:
            domains.append(load_domain(name, root, split=split, split_list=_split_list(item, name, flag, split)))
        except DataError as e:
            raise UsageError(f"--{flag}: {e}") from None
    return domains
