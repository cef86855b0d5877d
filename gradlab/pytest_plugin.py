"""pytest plugin: gradlab spec files become test items, so `pytest specs/` checks their gradients.

Installed with the package (entry point `pytest11`), following pytest's YAML-collection
example: `pytest_collect_file` -> `SpecFile.collect()` -> one `SpecItem` per spec and per
autograd device, with `runtest` / `repr_failure` / `reportinfo`.

Which files: those matching the ini option `gradlab_spec_glob` (default `*.yaml *.yml`;
a pattern with a `/` matches the end of the path, e.g. `specs/*.yaml`). Because the plugin
is active in every pytest run of an environment that has gradlab, it must never break
someone else's suite: a matching YAML file that a directory walk finds is only taken when
its first 16 KiB look like a spec -- a top-level `network` (or a near-miss such as
`netwrok`) whose `layers` is a list of mappings with a `type` key -- and any error while
sniffing means "not a spec". A file named on the command line is always taken. Whatever
goes wrong while loading a spec becomes a failing item, never a collection error.

`--gradlab-no-code` (or the ini option `gradlab_no_code = true`, or GRADLAB_NO_CODE=1)
refuses every spec that names user code (`impl:`) before anything is imported, collection
included. `-p no:gradlab` turns the plugin off.

A green means checked, as in `gradlab check`: an item whose rows agree but leave part of what it asks for
unchecked (a kink-only tensor no other pair judged, an op without a torch mirror) fails as INCOMPLETE,
naming what and why, unless `--gradlab-allow-unchecked` (ini `gradlab_allow_unchecked`, or
GRADLAB_ALLOW_UNCHECKED=1) accepts it; it then passes with a warning naming each. An autograd device this
machine lacks is pytest's usual skip.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from .specfiles import DEFAULT_GLOB, SNIFF_BYTES, looks_like_spec as _looks_like_spec, matches
from .specfiles import _text_has_typed_layers  # noqa: F401 -- tests reach the sniffing rules through the plugin

_TURNED_NO_CODE_ON = pytest.StashKey[bool]()  # this run switched user code off, and switches it back on at the end


class GradlabWarning(UserWarning):
    """A check that passed but should not pass silently (zero gradient, kinks)."""


class Incomplete(Exception):
    """Raised by a SpecItem whose rows agree but leave something asked for unchecked (gradlab check's exit 4)."""

    def __init__(self, items):
        super().__init__(f"{len(items)} thing(s) not checked")
        self.items = items


def _unchecked_allowed(config) -> bool:
    from .batch import env_allows_unchecked  # not the CLI's flag: a pytest run inside a process never inherits a command's

    return bool(config.getoption("gradlab_allow_unchecked") or config.getini("gradlab_allow_unchecked") or env_allows_unchecked())


class GradientMismatch(Exception):
    """Raised by a SpecItem whose comparisons fail; carries the rows for repr_failure."""

    def __init__(self, result):
        super().__init__(f"{len(result.failures)} comparison(s) fail")
        self.result = result


def pytest_addoption(parser) -> None:
    parser.addini("gradlab_spec_glob", type="args", default=DEFAULT_GLOB,
                  help="glob(s) of gradlab spec files to collect as tests (default: *.yaml *.yml)")
    parser.addini("gradlab_no_code", type="bool", default=False,
                  help="refuse gradlab specs that name user code (impl:) before importing anything (default: false)")
    parser.addini("gradlab_allow_unchecked", type="bool", default=False,
                  help="pass a spec's item although part of what it asks for could not be checked (named in a warning); default: fail it")
    parser.getgroup("gradlab").addoption(
        "--gradlab-allow-unchecked", action="store_true", default=False, dest="gradlab_allow_unchecked",
        help="pass gradlab items although part of what they ask for could not be checked (still named; also GRADLAB_ALLOW_UNCHECKED=1)")
    parser.getgroup("gradlab").addoption(
        "--gradlab-no-code", action="store_true", default=False, dest="gradlab_no_code",
        help="refuse gradlab specs that name user code (impl:) before importing anything, e.g. on untrusted pull requests")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "gradlab: a gradient check collected from a gradlab spec file")
    if config.getoption("gradlab_no_code") or config.getini("gradlab_no_code"):
        from . import usercode

        # undone in pytest_unconfigure, so that a pytest run inside a process (pytester) leaves the switch as it was
        config.stash[_TURNED_NO_CODE_ON] = not usercode.forbid_code()


def pytest_unconfigure(config) -> None:
    if config.stash.get(_TURNED_NO_CODE_ON, False):
        from . import usercode

        usercode.forbid_code(False)


def pytest_collect_file(file_path: Path, parent):
    patterns = parent.config.getini("gradlab_spec_glob") or DEFAULT_GLOB
    if not matches(file_path, patterns):
        return None
    if parent.session.isinitpath(file_path) or _looks_like_spec(file_path):
        return SpecFile.from_parent(parent, path=file_path)
    return None


def _one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception as one line of at most `limit` characters (a hostile value must not flood the log)."""
    from .report.escape import visible

    text = visible(" ".join(str(exc).split()) or type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SpecFile(pytest.File):
    """One spec file: checked once, judged by one item per autograd device."""

    _result = None

    def collect(self):
        from .report.escape import visible
        from .spec import load_spec

        try:
            if self.names_code():  # loading imports the user's module and probes its ops: in a child it cannot end
                spec = _supervised(_describe, str(self.path))
            else:
                spec = load_spec(self.path)
        except (KeyboardInterrupt, pytest.skip.Exception):
            raise
        except BaseException as exc:  # noqa: BLE001 -- a failing item, never a collection error that stops the suite
            yield SpecItem.from_parent(self, name=self.path.stem, spec=None, device=None, error=exc)
            return
        name = visible(spec.name or self.path.stem)  # the node id is printed: no control characters in it
        devices = list(dict.fromkeys(spec.check.devices))
        for i, device in enumerate(devices):
            # the first item also judges the rows of no autograd device (analytic vs numeric)
            yield SpecItem.from_parent(self, name=name if len(devices) == 1 else f"{name}[{device}]", spec=spec,
                                       device=device, others=tuple(devices) if i == 0 else None)

    def names_code(self) -> bool:
        """The spec may name user code (`impl:`): its loading and checking run in a supervised child."""
        if self._names_code is None:
            from .batch import names_code
            from .supervise import enabled

            self._names_code = enabled() and names_code(self.path)
        return self._names_code

    _names_code = None

    def result(self, spec):
        if self._result is None:
            if self.names_code():
                self._result = _supervised(_check, str(self.path))
            else:
                self._result = _check(str(self.path), spec)
        return self._result


def _describe(path: str):
    """What collection needs of a spec with user code, loaded in the child (the Spec is plain data)."""
    from .spec import load_spec

    return load_spec(path)


def _check(path: str, spec=None):
    from . import runner
    from .errors import GradlabError
    from .spec import load_spec
    from .usercode import Timeout, deadline

    spec = spec if spec is not None else load_spec(path)
    try:
        with deadline(spec.check.timeout, path):
            return runner.run(spec, path=path)
    except Timeout as exc:  # a BaseException: pytest must see an ordinary failure
        raise GradlabError(exc.message()) from None


def _supervised(fn, path: str):
    """fn(path) in a child process that user code cannot end: what it returns or raises, or why it died.

    A KeyboardInterrupt or SystemExit the user's op raises comes back as that op's error (this item
    fails, the session goes on); a real Ctrl-C reaches pytest itself.
    """
    from .errors import GradlabError
    from .supervise import ProcessEnded, call
    from .usercode import describe

    try:
        return call(fn, path)
    except ProcessEnded as exc:
        raise GradlabError(f"user code ended the check: {exc}") from None
    except (KeyboardInterrupt, SystemExit) as exc:
        raise GradlabError(f"user code {describe(exc)}") from None


class SpecItem(pytest.Item):
    def __init__(self, *, spec, device, error=None, others=None, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.device, self.error = spec, device, error
        self._owns_rest = others  # devices whose rows other items judge; None: only this device's rows
        self.add_marker("gradlab")

    def _owned(self, result):
        rows = [c for c in result.comparisons
                if c.device == self.device or (self._owns_rest is not None and c.device not in self._owns_rest)]
        return dataclasses.replace(result, comparisons=rows)

    def runtest(self) -> None:
        if self.error is not None:
            raise self.error
        result = self._owned(self.parent.result(self.spec))
        if not result.passed:
            raise GradientMismatch(result)
        judged = [c for c in result.comparisons if c.status != "skipped"]
        if not judged:
            reasons = sorted({c.note for c in result.comparisons if c.note})
            pytest.skip("; ".join(reasons) or f"nothing to check on {self.device}")
        for status in ("zero-gradient", "kink"):
            by_note: dict[str, list[str]] = {}  # each tensor's own reason (a key bias cancels; a step blocks): one warning a reason
            for c in judged:
                if c.status == status:
                    by_note.setdefault(c.note, []).append(c.parameter)
            for note, names in by_note.items():
                self.warn(GradlabWarning(f"{status} for {', '.join(dict.fromkeys(names))}: {note}"))
        for w in getattr(result, "warnings", []):  # hazards around right values (a dense layer on a spatial axis)
            self.warn(GradlabWarning(w.text()))
        if result.unchecked and not _unchecked_allowed(self.config):  # as `gradlab check` exits 4: never a silent pass
            raise Incomplete(result.unchecked)
        for u in result.unchecked:  # accepted: still named
            self.warn(GradlabWarning(f"not checked: {u.text()}"))

    def repr_failure(self, excinfo, style=None):
        from .errors import GradlabError, SpecError
        from .report.escape import visible

        if isinstance(excinfo.value, SpecError):
            return f"invalid gradlab spec: {visible(str(excinfo.value))}"
        if self.error is not None and excinfo.value is self.error:  # loading the spec went wrong otherwise
            what = "error" if isinstance(self.error, GradlabError) else f"{type(self.error).__name__} while loading the spec"
            return f"gradlab {what}: {self.path}: {_one_line(self.error)}"
        if isinstance(excinfo.value, GradlabError):  # e.g. the user's op raised while the spec ran
            return f"gradlab error: {self.path}: {_one_line(excinfo.value)}"
        if isinstance(excinfo.value, Incomplete):
            items = "; ".join(visible(u.text()) for u in excinfo.value.items)
            return (f"INCOMPLETE: what was checked agrees, but not everything asked for was checked: {items}\n"
                    "(accept it with --gradlab-allow-unchecked, the ini option gradlab_allow_unchecked = true, or GRADLAB_ALLOW_UNCHECKED=1)")
        if isinstance(excinfo.value, GradientMismatch):
            from .report.failure import failure_text
            from .report.terminal import plain_table

            result = excinfo.value.result
            return f"{plain_table(result)}\n\n{failure_text(result)}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        # line 0, not None: pytest's warn() needs a line to point its warning at (a zero-gradient or kink
        # row warns), and asserts on None
        return self.path, 0, f"gradlab spec: {self.name}"
