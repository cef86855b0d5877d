"""Reports: one module per format, each a pure function of the results and the run's environment.

    render("md", results, environment)              -> str
    render("html", results, environment, depth=...) -> str (depth: spec path -> DepthProfile)

`format_for(path)` picks the format from a file's suffix, as `gradlab check --report` does.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from ..errors import GradlabError

# format name -> module holding its render(results, environment)
FORMATS = {"md": "markdown", "html": "html", "json": "json_rows", "csv": "csv_rows", "junit": "junit"}
SUFFIXES = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".json": "json", ".csv": "csv", ".xml": "junit"}


def format_for(path: str | Path) -> str:
    """The report format a file name asks for, or an error that lists the suffixes gradlab knows."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        known = ", ".join(f"{s} ({f})" for s, f in SUFFIXES.items())
        raise GradlabError(f"--report {path}: cannot tell the report format from {suffix or 'a name without a suffix'!r}; use one of {known}")
    return SUFFIXES[suffix]


def render(fmt: str, results, environment: dict, *, depth: dict | None = None) -> str:
    """The report in format `fmt` (md, html, json, csv, junit)."""
    if fmt not in FORMATS:
        raise GradlabError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
    module = import_module(f"{__name__}.{FORMATS[fmt]}")  # matplotlib and jinja2 load only for HTML
    return module.render(results, environment, depth=depth) if fmt == "html" else module.render(results, environment)
