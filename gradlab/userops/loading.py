"""TARGET -> the user's op: `path/to/file.py:Name` or `package.module:Name`.

A class is instantiated with no arguments (a `torch.autograd.Function` subclass is kept as
the class: its `apply` is what gets called); an instance is deep-copied. Every caller -- an
audit, each custom layer of a spec -- therefore gets its own object, and state one of them
leaves behind (caches, parameters written in place) never leaks into another.
Files are imported once per version (path and modification time), under a private module
name, with their folder on `sys.path` while they import so sibling imports work. A file whose
imports need its repository (`from ..layers import *`, `from deepnet.im2col import ...` inside
deepnet/, `from common.functions import *` from a sibling folder) is imported from the root that
makes them resolve (roots.py: found by reading the import statements, never by running them) --
as a module of its package when it has one -- and `imported_as(path)` says which root and name.
"""

from __future__ import annotations

import copy
import errno
import difflib
import importlib
import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import roots
from ..errors import GradlabError, TargetError  # noqa: F401 -- TargetError: imported from here across gradlab
from ..usercode import Timeout, UserCodeError, code_allowed, describe, interrupted, raised_by_user, user_code, user_line

FORMAT = "path/to/file.py:Name or package.module:Name"


_MODULES: dict[tuple[str, int], Any] = {}


def split(target: str) -> tuple[str, str]:
    """'dir/ops.py:Swish' -> ('dir/ops.py', 'Swish'); the last colon splits (Windows drives keep theirs)."""
    source, sep, name = str(target).rpartition(":")
    if not sep or not source or not name or not name.replace("_", "a").replace(".", "a").isalnum():
        raise TargetError(f"expected {FORMAT}, got {target!r}")
    return source, name


def is_file(source: str) -> bool:
    return source.endswith(".py") or "/" in source or "\\" in source


def resolve(target: str, base_dir: str | Path | None = None) -> str:
    """The target with a file path made absolute (relative paths count from `base_dir`, default: cwd)."""
    source, name = split(target)
    if not is_file(source):
        return f"{source}:{name}"
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    return f"{_resolved(path, source)}:{name}"


def _resolved(path: Path, shown: str) -> Path:
    """path.resolve(), with a symlink loop (RuntimeError before Python 3.13, OSError ELOOP after) as the user's error."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        why = "is a symlink loop" if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP else f"cannot be read ({exc.strerror or exc})"
        raise TargetError(f"{shown}: {why}; point at the .py file itself") from None


def _import_error(where: str, exc: BaseException) -> TargetError:
    # The innermost line in the user's own files (a sibling module they import included), never gradlab's
    # loader or a library's; a SyntaxError says where it is itself (describe() already carries it).
    at = "" if isinstance(exc, SyntaxError) and "line " in describe(exc) else user_line(exc)
    hint = ""
    if isinstance(exc, ImportError) and "relative import" in str(exc):
        hint = "; gradlab found no package root for it (folders with __init__.py, or as many folders above it as the import climbs)"
    return TargetError(f"{where}: cannot import: {describe(exc)}{at}{hint}")


ATTRIBUTE_HINT = ("; gradlab looks up names such as forward, backward, kind, domain and params on the op, and a property or "
                  "__getattr__ must raise AttributeError for a name it does not have")


@contextmanager
def inspecting(target: str, doing: str = "reading its attributes", hint: str = ATTRIBUTE_HINT) -> Iterator[None]:
    """gradlab reading the user's object runs the user's code (a property, __getattr__, __len__, __eq__):
    whatever comes out of that code is the op's error, a TargetError naming the target and the user's line.
    An exception with gradlab's own frame innermost is gradlab's (a bug) and passes on unchanged."""
    try:
        yield
    except (GradlabError, Timeout):
        raise
    except BaseException as exc:  # noqa: BLE001 -- SystemExit or a KeyboardInterrupt of the user's own included
        if isinstance(exc, KeyboardInterrupt) and interrupted() or not raised_by_user(exc, _package_of(target)):
            raise
        raise TargetError(f"{target}: {doing} {describe(exc)}{user_line(exc)}{hint}") from None


def _package_of(target: str) -> tuple[str, ...]:
    """The folder of the installed package a dotted target (`mypkg.layers:Conv`) names: its frames are the user's."""
    source = str(target).rpartition(":")[0]
    if not source or is_file(source):
        return ()
    module = sys.modules.get(source.split(".")[0])
    file = getattr(module, "__file__", None)
    return (str(Path(file).resolve().parent),) if isinstance(file, str) else ()


def _refuse_if_no_code(target: str) -> None:
    if not code_allowed():
        raise TargetError(f"user code is switched off (--no-code, GRADLAB_NO_CODE=1, or pytest's --gradlab-no-code / gradlab_no_code), "
                          f"so {target} was not imported; run gradlab where you trust this code")


@contextmanager
def _import_guard(where: str) -> Iterator[None]:
    """Importing runs the user's module: whatever it raises or exits with (usercode.user_code) is a TargetError."""
    try:
        with user_code(f"the import of {where}"):
            yield
    except UserCodeError as exc:
        original = exc.__context__  # what the module raised
        raise _import_error(where, original) from original


def imported_as(source: str | Path, base_dir: str | Path | None = None) -> str:
    """'deepnet.layers, from the root /repo (its folders with __init__.py)': how a file a target names was
    imported, when it needed its repository's root; '' for a file imported alone (its folder on sys.path)."""
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    try:
        return _HOW.get(str(path.resolve()), "")
    except (OSError, RuntimeError):
        return ""


_HOW: dict[str, str] = {}  # resolved file path -> how it was imported (roots.Plan.text())


def _load_file(path: Path, shown: str):
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "no such file"
        raise TargetError(f"{shown}: {what}" + (f" (looked for {path})" if str(path) != shown else "") + f"; expected a Python file ({FORMAT})")
    if path.suffix != ".py":
        raise TargetError(f"{shown}: not a Python file (expected a .py file: {FORMAT})")
    key = (str(path), path.stat().st_mtime_ns)
    if key in _MODULES:
        return _MODULES[key]
    plan = roots.plan(path)
    if plan is not None:
        module = _load_in_package(path, shown, plan)
        _MODULES[key] = module
        _HOW[str(path)] = plan.text()
        return module
    _HOW.pop(str(path), None)
    mod_name = f"gradlab_user_{path.stem}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look the module up by name
    folder = str(path.parent)
    sys.path.insert(0, folder)
    try:
        with _import_guard(shown):
            spec.loader.exec_module(module)
    except TargetError as exc:
        sys.modules.pop(mod_name, None)
        raise TargetError(f"{exc}{roots.unresolved_hint(path, exc.__cause__)}") from exc.__cause__
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    _MODULES[key] = module
    return module


def _load_in_package(path: Path, shown: str, plan: "roots.Plan"):
    """Import the file as `plan.module` with `plan.root` (and the file's folder, for sibling imports) first on
    sys.path: relative imports, imports of its own package and of sibling folders resolve as in the repository.
    A file whose package needs no name (a script beside a sibling folder) gets a private name, like a lone file."""
    roots.claim(plan, shown)  # a package of that name gradlab imported from another root is put aside
    folders = [str(plan.root), *map(str, plan.extra), str(path.parent)]
    kept = list(sys.path)
    sys.path[:] = [f for f in dict.fromkeys(folders)] + [p for p in kept if p not in folders]
    name = plan.module if plan.package else f"gradlab_user_{path.stem}_{abs(hash(str(path))):x}"
    try:
        with _import_guard(shown):
            if plan.package:
                sys.modules.pop(name, None)  # a new version of the file: run it again
                module = importlib.import_module(name)
            else:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
    except TargetError as exc:
        raise TargetError(f"{exc}{roots.failed_hint(plan, exc.__cause__)}") from exc.__cause__
    finally:
        # the root stays at the end of sys.path: a namespace package recomputes its __path__ from it, and an
        # import inside a function of the user's runs later
        sys.path[:] = [p for p in sys.path if p not in folders] + [str(plan.root)]
    roots.loaded(plan)
    if plan.package and Path(getattr(module, "__file__", "") or "").resolve() != path:
        raise TargetError(f"{shown}: imported as {plan.module}, but that name is {getattr(module, '__file__', None)!r} in this process, "
                          f"not this file; rename the folder or run gradlab on the other file")
    return module


def _load_module(dotted: str):
    """A dotted name is imported from the installed packages only (sys.path without the working directory):
    gradlab never picks up a stray `setup.py` or `test.py` from wherever it happens to run."""
    here = {"", ".", str(Path.cwd())}
    kept = list(sys.path)
    sys.path[:] = [p for p in kept if p not in here]  # `python -m` and `-c` put the working directory first
    try:
        with _import_guard(dotted):
            return importlib.import_module(dotted)
    except TargetError as exc:
        cause = exc.__cause__
        if isinstance(cause, ModuleNotFoundError) and cause.name and dotted.startswith(cause.name):
            raise TargetError(f"{dotted}: no module named {cause.name!r} among the installed packages (sys.path); "
                              f"for a file, write path/to/file.py:Name (e.g. ./{dotted.replace('.', '/')}.py:Name)") from None
        raise
    finally:
        sys.path[:] = kept + [p for p in sys.path if p not in kept]


def load_raw(target: str, base_dir: str | Path | None = None) -> Any:
    """The module attribute TARGET names, as defined (a class stays a class)."""
    _refuse_if_no_code(target)
    source, name = split(target)
    shown = source
    if is_file(source):
        path = Path(resolve(target, base_dir).rpartition(":")[0])
        module = _load_file(path, shown)
    else:
        module = _load_module(source)
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            defined = sorted(k for k, v in vars(module).items() if not k.startswith("_") and getattr(v, "__module__", None) == module.__name__)
            close = difflib.get_close_matches(part, defined, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listing = f" (it defines: {', '.join(defined)})" if defined else ""
            raise TargetError(f"{shown}: no class or object named {part!r}{hint}{listing}")
        obj = getattr(obj, part)
    return obj


def load_module(source: str, base_dir: str | Path | None = None):
    """A whole file (`gradlab audit layers.py`), imported like a target's file."""
    _refuse_if_no_code(source)
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    return _load_file(_resolved(path, source), source)


def is_torch_function(obj: Any) -> bool:
    """A torch.autograd.Function subclass; torch is only consulted if the user's code imported it."""
    torch = sys.modules.get("torch")
    return bool(torch) and isinstance(obj, type) and issubclass(obj, torch.autograd.Function)


def instantiate(raw: Any, target: str) -> Any:
    """A fresh object: a class called with no arguments, an instance deep-copied."""
    if is_torch_function(raw):
        return raw
    if isinstance(raw, type):
        try:
            with user_code(f"{target}: {raw.__name__}()"):
                return raw()
        except UserCodeError as exc:
            if isinstance(exc.__context__, TypeError) and "argument" in str(exc):
                raise TargetError(f"{target}: cannot create {raw.__name__}() with no arguments; give the constructor defaults, or point at an instance") from None
            raise TargetError(str(exc)) from None
    if callable(raw) and not any(hasattr(raw, m) for m in ("forward", "backward")):
        raise TargetError(f"{target}: is a function, not an op; point at a class or an object with forward and backward methods")
    try:
        return copy.deepcopy(raw)
    except Exception:
        return raw  # not copyable (holds a lock, a file): share it, as the user asked for this object


def load(target: str, base_dir: str | Path | None = None) -> Any:
    """Load TARGET and return a fresh op object (see the module docstring)."""
    return instantiate(load_raw(target, base_dir), target)
