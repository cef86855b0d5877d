"""Which files are specs: one rule for `gradlab check DIR`, `gradlab stats DIR`, `gradlab report DIR` and `pytest DIR`.

A file named on the command line is always a spec. A directory is walked the way pytest walks it
-- subfolders too, except pytest's default `norecursedirs` (hidden folders, build, dist, venv,
node_modules, *.egg, ...) and virtual environments -- and a `*.yaml` / `*.yml` file found there is
taken only when its first 16 KiB look like a spec: a top-level `network` (or a near-miss such as
`netwrok`) whose `layers` is a list of mappings with a `type` key. So other YAML (CI configs, Hydra
configs, data fixtures) beside the specs is left alone, and a broken spec is still recognised and
reported. Whatever a hostile file does to the parser, it is "not a spec".
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import stat
from pathlib import Path

DEFAULT_GLOB = ["*.yaml", "*.yml"]
SNIFF_BYTES = 16 * 1024  # only the head of a file is read to decide whether it is a spec
NEAR_MISS = 0.75  # a top-level key this close to `network` (difflib ratio) is a typo of it
# pytest's default `norecursedirs`: folders a directory walk never enters
NORECURSE = ("*.egg", ".*", "_darcs", "build", "CVS", "dist", "node_modules", "venv", "{arch}")

# the text-only fallback: a top-level key line, then `layers:` with a list and a `type:` before the next top-level key
_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:", re.MULTILINE)
_NEXT_TOP_LINE = re.compile(r"^[^\s#-]", re.MULTILINE)
_LAYERS_WITH_TYPE = re.compile(r"\blayers[ \t]*:\s*[\[-].*?\btype[ \t]*:", re.DOTALL)  # searched within the network section


def _is_network_key(key) -> bool:
    return isinstance(key, str) and (key == "network" or difflib.SequenceMatcher(None, key, "network").ratio() >= NEAR_MISS)


def _has_typed_layers(doc) -> bool:
    """A parsed head: a top-level network (or a typo of it) whose `layers` lists mappings, one with a `type`."""
    if not isinstance(doc, dict):
        return False
    for key, network in doc.items():
        layers = network.get("layers") if _is_network_key(key) and isinstance(network, dict) else None
        if isinstance(layers, list) and layers and all(isinstance(x, dict) for x in layers) and any("type" in x for x in layers):
            return True
    return False


def _text_has_typed_layers(text: str) -> bool:
    """The same rule on text that does not parse (a broken spec, or a head cut mid-document)."""
    for top in _TOP_KEY.finditer(text):
        if not _is_network_key(top.group(1)):
            continue
        following = _NEXT_TOP_LINE.search(text, top.end())  # the section ends at the next top-level line
        if _LAYERS_WITH_TYPE.search(text[top.end():following.start() if following else len(text)]):
            return True
    return False


def looks_like_spec(path: Path) -> bool:
    """Leave other YAML (CI configs, Hydra configs, data fixtures) alone; a broken spec is still recognised.

    Reads at most SNIFF_BYTES; any error at all (unreadable, not text, a parser's RecursionError or
    MemoryError) means "not a spec": the plugin must never stop someone else's collection.
    """
    try:
        return _sniff(path)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 -- whatever a hostile file does to the parser, it is not a spec
        return False


def _sniff(path: Path) -> bool:
    import yaml

    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or a device would block or never end
        return False
    with open(path, "rb") as f:
        raw = f.read(SNIFF_BYTES + 1)
    cut = len(raw) > SNIFF_BYTES
    if cut:  # parse whole lines only; a multi-byte character cut at the end is dropped
        raw = raw[:SNIFF_BYTES].rsplit(b"\n", 1)[0]
    text = raw.decode("utf-8-sig", errors="ignore" if cut else "strict")
    if "layers" not in text or "type" not in text:
        return False  # the common case, decided without a parser
    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return _text_has_typed_layers(text)
    return _has_typed_layers(doc) or (cut and _text_has_typed_layers(text))


def matches(path: Path, patterns=DEFAULT_GLOB) -> bool:
    return any(path.match(p) for p in patterns)


def _skipped_dir(path: Path) -> bool:
    """pytest's default norecursedirs, and a virtual environment (pytest skips those unless told otherwise)."""
    return any(fnmatch.fnmatch(path.name, p) for p in NORECURSE) or (path / "pyvenv.cfg").is_file() \
        or (path / "bin" / "activate").is_file() or (path / "Scripts" / "activate.bat").is_file()


def walk(directory: Path) -> tuple[list[Path], list[Path]]:
    """(specs, other YAML) under `directory`, sorted: subfolders too, as pytest collects them."""
    specs, other = [], []
    for root, dirs, files in os.walk(directory, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not _skipped_dir(Path(root) / d))
        for name in files:
            path = Path(root) / name
            if matches(path):
                (specs if looks_like_spec(path) else other).append(path)
    return sorted(specs), sorted(other)
