"""Which root makes a file's imports resolve, read from its import statements (never by running them).

A file from a repository imports the way the repository runs it:

    cs231n/classifiers/fc_net.py    from ..layers import *            a package two levels up
    deepnet/layers.py               from deepnet.im2col import im2col  its own package, by name
    pkg/sub/mod.py (no __init__)    from ..util import f               a namespace package
    ch05/two_layer_net.py           from common.layers import *        a sibling folder of ch05/

`plan(path)` parses the file (ast), collects its relative imports (how many levels they climb) and the
top-level names of its absolute imports outside `try:` blocks that neither the standard library nor the
file's own folder provides, and walks up the folders above the file -- to the first project marker
(pyproject.toml, setup.py, setup.cfg, .git) or MAX_UP levels -- for the nearest root that is high
enough for the relative imports, at or above the folders with __init__.py, and holds a folder (or .py
file) for each missing name. The file is then imported as a module of its package (its dotted path
from the root) when it has relative imports, sits inside the package it names, or inside folders with
__init__.py up to the root; otherwise under a private name with the root on sys.path. None: the file
needs no root (imported alone, as before). Names nothing above the file provides (an uninstalled
library) do not steer the choice; their import fails with Python's own message.
"""

from __future__ import annotations

import ast
import keyword
import sys
from dataclasses import dataclass, field
from pathlib import Path

MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
MAX_UP = 6  # folders above the file searched when no project marker is met first


@dataclass(frozen=True)
class Plan:
    """How to import one file: under `module` (dotted, when `package`) with `root` first on sys.path."""

    module: str
    root: Path
    package: bool
    why: str
    extra: tuple[Path, ...] = ()  # further roots holding other missing names
    statements: tuple[str, ...] = field(default=(), compare=False)  # the imports that needed the root

    def text(self) -> str:
        name = self.module if self.package else f"{self.module.rpartition('.')[2]} (private name)"
        more = "".join(f", and {p}" for p in self.extra)
        return f"imported as {name} from the root {self.root}{more} ({self.why})"


def _statements(path: Path) -> tuple[int, list[tuple[str, str]], list[str]]:
    """(deepest relative level, [(top-level name, statement)] of absolute imports outside try blocks, relative statements)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return 0, [], []  # the import itself reports it
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            for child in node.body:
                guarded.update(id(n) for n in ast.walk(child))
    level, names, relative = 0, [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            level = max(level, node.level)
            relative.append(_text(node))
        elif id(node) in guarded:
            continue
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append((node.module.split(".")[0], _text(node)))
        elif isinstance(node, ast.Import):
            names += [(a.name.split(".")[0], _text(node)) for a in node.names]
    return level, names, relative


def _text(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 80 else text[:77] + "..."


def _provides(folder: Path, name: str) -> bool:
    """`folder` holds a module or package `name` (a folder, name.py, or a compiled extension)."""
    try:
        return (folder / name).is_dir() or (folder / f"{name}.py").is_file() or any(folder.glob(f"{name}.*.so")) or any(folder.glob(f"{name}.*.pyd"))
    except OSError:
        return False


def _elsewhere(name: str) -> bool:
    """The standard library, or a module this process already holds (numpy, torch): no root needed, none can replace it."""
    return name in getattr(sys, "stdlib_module_names", ()) or name in sys.builtin_module_names or (name in sys.modules and name not in _OURS)


def _ancestors(folder: Path) -> list[Path]:
    """The folders above `folder`, nearest first, up to the first project marker (inclusive) or MAX_UP."""
    out = []
    for parent in list(folder.parents)[:MAX_UP]:
        out.append(parent)
        if any((parent / m).exists() for m in MARKERS):
            break
    return out


def _package_top(folder: Path) -> int:
    """How many folders, from `folder` up, hold an __init__.py (a regular package chain)."""
    n = 0
    for f in [folder, *folder.parents]:
        if not (f / "__init__.py").is_file():
            break
        n += 1
    return n


def _dotted(path: Path, root: Path) -> str | None:
    parts = path.with_suffix("").relative_to(root).parts
    ok = all(p.isidentifier() and not keyword.iskeyword(p) for p in parts)
    return ".".join(parts) if ok else None


def plan(path: Path) -> Plan | None:
    """The root `path`'s imports need and the name to import it under; None when it needs none."""
    folder = path.parent
    level, names, relative = _statements(path)
    ups = _ancestors(folder)
    missing: dict[str, str] = {}
    for name, statement in names:
        if name in missing or _elsewhere(name) or _provides(folder, name):
            continue
        if any(_provides(a, name) for a in ups):
            missing[name] = statement
    if not level and not missing:
        return None
    chain = _package_top(folder)
    best: tuple[int, int, Path] | None = None
    for depth, root in enumerate(ups, start=1):
        if depth < level:
            continue
        found = sum(_provides(root, n) for n in missing)
        if best is None or found > best[0]:
            best = (found, depth, root)
        if found == len(missing):
            break
    if best is None:  # the relative imports climb above every folder searched
        return Plan(path.stem, folder, False, f"{relative[0]} climbs {level} folders; none above the file was searched that high",
                    statements=tuple(relative))
    found, depth, root = best
    extra = tuple(dict.fromkeys(next(a for a in ups if _provides(a, n)) for n in missing if not _provides(root, n)))
    dotted = _dotted(path, root)
    inside = path.relative_to(root).parts[0] in missing
    package = dotted is not None and (level > 0 or inside or chain >= depth)
    reasons = []
    if chain >= depth:
        reasons.append("the folders above with __init__.py" + (f"; {relative[0]}" if level else ""))
    elif level:
        reasons.append(f"{relative[0]} climbs {level} folder{'s' if level > 1 else ''}" + ("" if chain else "; a namespace package"))
    for name, statement in missing.items():
        where = "its own package" if path.relative_to(root).parts[0] == name else f"the folder {name}/" if (root / name).is_dir() else f"{name}.py"
        reasons.append(f"{statement} names {where}")
    module = dotted if dotted is not None else path.stem
    return Plan(module, root, package, "; ".join(reasons), extra, tuple(relative) + tuple(missing.values()))


_OURS: dict[str, Path] = {}  # top-level package names gradlab imported from a user's root -> that root


def claim(plan: Plan, shown: str) -> None:
    """Make the plan's top-level name free: a package of that name gradlab imported from another root earlier
    (another repository's `common`) is taken out of sys.modules (its modules keep working for whoever holds
    them). A name the process holds otherwise (an installed package, the standard library) cannot be replaced."""
    if not plan.package:
        return
    from ..errors import TargetError

    top = plan.module.split(".")[0]
    held = sys.modules.get(top)
    if held is None or _OURS.get(top) == plan.root:
        return
    if top in _OURS:
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
        return
    where = getattr(held, "__file__", None) or list(getattr(held, "__path__", []) or [])
    if _located(held, plan.root / top):
        return  # the same package, imported by the process itself (pytest's rootdir, an editable install)
    raise TargetError(f"{shown}: its imports need it as {plan.module} from the root {plan.root}, but this process already "
                      f"imported another {top!r} ({where}); rename the folder, or audit it in a process of its own")


def _located(module, folder: Path) -> bool:
    try:
        paths = [Path(p).resolve() for p in (getattr(module, "__path__", None) or [])]
        file = getattr(module, "__file__", None)
        if file:
            paths.append(Path(file).resolve().parent)
        return folder.resolve() in paths
    except (OSError, RuntimeError, TypeError):
        return False


def loaded(plan: Plan) -> None:
    if plan.package:
        _OURS[plan.module.split(".")[0]] = plan.root


def failed_hint(plan: Plan, exc: BaseException | None) -> str:
    """What gradlab tried, for an import that still failed: the root and name, and whether any folder has the missing name."""
    name = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    top = name.split(".")[0] if isinstance(name, str) and name else None
    searched = [plan.root, *_ancestors(plan.root)]
    about = ""
    if top and not any(_provides(a, top) for a in searched):
        about = f"; no folder from {plan.root} up to {searched[-1]} holds {top!r}: install it, or keep the file inside its repository"
    return f" (gradlab {plan.text()}){about}"


def unresolved_hint(path: Path, exc: BaseException | None) -> str:
    """For a file imported alone whose import of a module failed: the statement, and that no folder above it holds it."""
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not isinstance(name, str) or not name:
        return ""
    top = name.split(".")[0]
    _, names, _ = _statements(path)
    statement = next((st for n, st in names if n == top), None)
    ups = _ancestors(path.parent)
    where = f"{path.parent} up to {ups[-1]}" if ups else str(path.parent)
    return (f"; `{statement}` failed: " if statement else "; ") + \
        f"no folder from {where} holds {top!r} (a package root gradlab could import it from), and it is not installed"
