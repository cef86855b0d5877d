"""pytest plugin: gradlab spec files become test items, so `pytest specs/` checks their gradients.

Installed with the package (entry point `pytest11`), following pytest's YAML-collection
example: `pytest_collect_file` -> `SpecFile.collect()` -> one `SpecItem` per spec and per
autograd device, with `runtest` / `repr_failure` / `reportinfo`.

Which files: those matching the ini option `gradlab_spec_glob` (default `*.yaml *.yml`;
a pattern with a `/` matches the end of the path, e.g. `specs/*.yaml`). Because the plugin
is active in every pytest run of an environment that has gradlab, a matching YAML file
that a directory walk finds is only taken when it looks like a spec (a top-level
`network` key, or two of input/target/network/loss/check); a file named on the command
line is always taken. `-p no:gradlab` turns the plugin off.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

SPEC_KEYS = {"input", "target", "network", "loss", "check"}
DEFAULT_GLOB = ["*.yaml", "*.yml"]


class GradlabWarning(UserWarning):
    """A check that passed but should not pass silently (zero gradient, kinks)."""


class GradientMismatch(Exception):
    """Raised by a SpecItem whose comparisons fail; carries the rows for repr_failure."""

    def __init__(self, result):
        super().__init__(f"{len(result.failures)} comparison(s) fail")
        self.result = result


def pytest_addoption(parser) -> None:
    parser.addini("gradlab_spec_glob", type="args", default=DEFAULT_GLOB,
                  help="glob(s) of gradlab spec files to collect as tests (default: *.yaml *.yml)")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "gradlab: a gradient check collected from a gradlab spec file")


def _looks_like_spec(path: Path) -> bool:
    """Leave other YAML (CI configs, fixtures) alone; a broken spec is still recognised by its keys."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return re.search(r"^network\s*:", text, re.MULTILINE) is not None
    return isinstance(doc, dict) and ("network" in doc or len(SPEC_KEYS & set(map(str, doc))) >= 2)


def pytest_collect_file(file_path: Path, parent):
    patterns = parent.config.getini("gradlab_spec_glob") or DEFAULT_GLOB
    if not any(file_path.match(p) for p in patterns):
        return None
    if parent.session.isinitpath(file_path) or _looks_like_spec(file_path):
        return SpecFile.from_parent(parent, path=file_path)
    return None


class SpecFile(pytest.File):
    """One spec file: checked once, judged by one item per autograd device."""

    _result = None

    def collect(self):
        from .errors import SpecError
        from .spec import load_spec

        try:
            spec = load_spec(self.path)
        except SpecError as exc:
            yield SpecItem.from_parent(self, name=self.path.stem, spec=None, device=None, error=exc)
            return
        name = spec.name or self.path.stem
        devices = list(dict.fromkeys(spec.check.devices))
        for i, device in enumerate(devices):
            # the first item also judges the rows of no autograd device (analytic vs numeric)
            yield SpecItem.from_parent(self, name=name if len(devices) == 1 else f"{name}[{device}]", spec=spec,
                                       device=device, others=tuple(devices) if i == 0 else None)

    def result(self, spec):
        if self._result is None:
            from . import runner

            self._result = runner.run(spec, path=str(self.path))
        return self._result


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
            names = list(dict.fromkeys(c.parameter for c in judged if c.status == status))
            if names:
                note = next(c.note for c in judged if c.status == status)
                self.warn(GradlabWarning(f"{status} for {', '.join(names)}: {note}"))

    def repr_failure(self, excinfo, style=None):
        from .errors import SpecError

        if isinstance(excinfo.value, SpecError):
            return f"invalid gradlab spec: {excinfo.value}"
        if isinstance(excinfo.value, GradientMismatch):
            from .report.failure import failure_text
            from .report.terminal import plain_table

            result = excinfo.value.result
            return f"{plain_table(result)}\n\n{failure_text(result)}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"gradlab spec: {self.name}"
