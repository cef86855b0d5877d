"""User strings in every output: a spec's name, file path, parameter names and notes are shown, never obeyed.

One test per class of problem: HTML and Markdown injection into a pull-request comment (and @mentions),
characters that make JUnit XML unreadable, HTML injection into the report page, rich markup in the
terminal, and control characters in plain-text failures.
"""

import dataclasses
import io
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt
from rich.console import Console

from gradlab import runner
from gradlab.cli import main
from gradlab.commands.report import report_environment
from gradlab.ops import ACTIVATIONS
from gradlab.report import render
from gradlab.report.escape import md_code, md_html, md_text, visible, xml_safe
from gradlab.report.failure import failure_text
from gradlab.report.progress import RunProgress
from gradlab.report.terminal import plain_table
from gradlab.report.terminal import render as render_terminal

from .conftest import SPECS, registered
from .test_engines import BUGGY, BUGGY_SPEC

PASSING = next(p for p in SPECS if p.stem == "seed003_two_layer")

INJECTION = "x</details><h1>PASS</h1> @octocat"
MARKUP = ("[/]", "[bold red]x[/]")
PIPE = "a | b"
CONTROL = "nul\x00 esc\x1b[2J bell\x07 vt\x0b ff\x0c lone\ud800 bidi\u202e"
HOSTILE_NAMES = (INJECTION, *MARKUP, PIPE, CONTROL, "**bold** _it_ [link](https://example.com) `code` #1 \\")


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checked")
    (folder / "planted.yaml").write_text(BUGGY_SPEC)
    with registered(ACTIVATIONS, BUGGY):
        failing = runner.check_file(folder / "planted.yaml")
    results = {"pass": runner.check_file(PASSING), "fail": failing}
    return {**results, "environment": report_environment(list(results.values()))}


def _hostile(result, name: str, *, path: str | None = None):
    """The same result under a hostile name, file path and (for a failing spec) parameter names."""
    rename = {c.parameter: f"{c.parameter}{name}" for c in result.comparisons}
    rows = [dataclasses.replace(c, parameter=rename[c.parameter]) for c in result.comparisons] if not result.passed else result.comparisons
    return dataclasses.replace(result, name=name, path=path or f"specs/{name}.yaml", comparisons=rows)


@pytest.fixture(scope="module")
def hostile(checked):
    out = []
    for i, name in enumerate(HOSTILE_NAMES):
        out.append(_hostile(checked["pass"], name, path=f"specs/{name}/pass{i}.yaml"))
        out.append(_hostile(checked["fail"], name))
    return out


# --- Markdown: a pull-request comment ------------------------------------------------------------


class _Tags(HTMLParser):
    """The tags of a page, its text (and the text outside <code>), and the cells of each table row."""

    def __init__(self):
        super().__init__()
        self.tags, self.text, self.prose, self.rows, self._in_code = [], [], [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_code += tag == "code"
        if tag == "tr":
            self.rows.append(0)
        if tag in ("td", "th"):
            self.rows[-1] += 1

    def handle_endtag(self, tag):
        self.tags.append("/" + tag)
        self._in_code -= tag == "code"

    def handle_data(self, data):
        self.text.append(data)
        if not self._in_code:
            self.prose.append(data)


def _parse_html(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def test_markdown_shows_hostile_names_and_never_obeys_them(hostile, checked):
    md = render("md", hostile, checked["environment"])
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    page = _parse_html(html)
    assert "h1" not in page.tags, "a spec's name must not become a heading"
    assert "@octocat" not in "".join(page.prose), "GitHub would notify @octocat (code spans are not linked)"
    assert not {"em", "a", "img"} & set(page.tags) and "**bold** _it_ [link](https://example.com) `code` #1 \\" in "".join(page.text)
    assert page.tags.count("details") == page.tags.count("/details") == md.count("<details>")
    assert "</details><h1>PASS</h1> @\u200docto" in "".join(page.text)  # shown as text, mention defused
    assert "[/]" in "".join(page.text) and "[bold red]x[/]" in "".join(page.text)
    # a `|` in a name must not split a row: the summary has 6 columns, comparison tables 7, the others fewer
    assert max(page.rows) == 7 and sorted(set(page.rows)) == sorted(set(_parse_html(MarkdownIt("commonmark", {"html": True})
        .enable("table").render(render("md", list(checked.values())[:2], checked["environment"]))).rows))


@pytest.mark.parametrize("text", [*HOSTILE_NAMES, "```", "` leading", "trailing `", "", "   "])
def test_markdown_escapes_are_one_line_and_keep_the_text(text):
    for escaped in (md_text(text), md_code(text), md_html(text)):
        assert "\n" not in escaped and "\x00" not in escaped and "\ud800" not in escaped
        escaped.encode("utf-8")
    rendered = MarkdownIt("commonmark").render(md_text(text) + " " + md_code(text))
    assert "<h1>" not in rendered and "<a " not in rendered and "<em>" not in rendered and "<strong>" not in rendered


# --- JUnit XML -----------------------------------------------------------------------------------


def test_junit_with_control_characters_and_lone_surrogates_parses(hostile, checked):
    xml = render("junit", hostile, checked["environment"])
    data = xml.encode("utf-8")  # a lone surrogate would raise here
    root = ET.fromstring(data)
    names = {s.get("name") for s in root.iter("testsuite")}
    assert visible(CONTROL) in names and INJECTION in names
    assert any(visible(CONTROL) in (c.get("name") or "") for c in root.iter("testcase"))


def test_junit_parses_with_junitparser(hostile, checked, tmp_path):
    junitparser = pytest.importorskip("junitparser")
    path = tmp_path / "junit.xml"
    path.write_bytes(render("junit", hostile, checked["environment"]).encode("utf-8"))
    suites = list(junitparser.JUnitXml.fromfile(str(path)))
    assert len(suites) == len(hostile)


def test_xml_safe_keeps_what_xml_allows():
    assert xml_safe("tab\tnewline\ncr\r é 漢 \U0001f600") == "tab\tnewline\ncr\r é 漢 \U0001f600"
    assert xml_safe("a\x00b\x08c\x0bd\x1fe\ud800f\ufffe") == "a\\x00b\\x08c\\x0bd\\x1fe\\ud800f\\ufffe"


# --- HTML page -----------------------------------------------------------------------------------


def test_html_escapes_every_hostile_name(hostile, checked):
    html = render("html", hostile, checked["environment"])
    html.encode("utf-8")
    page = _parse_html(html)
    assert page.tags.count("h1") == 1, "only gradlab's own heading"
    assert page.tags.count("details") == page.tags.count("/details")
    text = "".join(page.text)
    assert INJECTION in text and "[bold red]x[/]" in text and visible(CONTROL) in text
    assert "<h1>PASS" not in html and "x&lt;/details&gt;&lt;h1&gt;PASS" in html


# --- terminal (rich) -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*MARKUP, "[link=https://example.com]x[/link]", CONTROL])
def test_terminal_prints_rich_markup_in_names_literally(checked, name):
    results = [_hostile(checked["pass"], name, path=f"specs/{name}/[bold]net.yaml"), _hostile(checked["fail"], name)]
    out = io.StringIO()
    render_terminal(results, console=Console(file=out, width=400, force_terminal=True), verbose=True)
    render_terminal(results, console=Console(file=io.StringIO(), width=400))  # no colour: the same code path
    text, shown = out.getvalue(), visible(name)
    assert all(part in text for part in f"{shown} specs/{shown}/[bold]net.yaml".split()), "the title wraps at spaces"
    assert "\x1b[2J" not in text and "\x00" not in text
    assert shown in plain_table(results[1]) and shown in failure_text(results[1])
    assert "\x00" not in failure_text(results[1])


def test_progress_bar_shows_a_markup_name(checked):
    out = io.StringIO()
    with RunProgress(2, console=Console(file=out, force_terminal=True, width=200), delay=0.0) as bar:
        bar.spec("[/]", 3)(3)
        bar.spec("[bold red]x[/]", 3)(3)
    assert "[bold red]x[/]" in out.getvalue()


def test_check_of_specs_with_markup_in_name_and_file_name_exits_0(tmp_path):
    """`name: '[/]'` raised rich's MarkupError after the check had passed."""
    folder = tmp_path / "[bold]"
    folder.mkdir()
    text = PASSING.read_text()
    (folder / "[red]a.yaml").write_text(text.replace("name: seed003-two-layer", "name: '[/]'"))
    (folder / "b.yaml").write_text(text.replace("name: seed003-two-layer", "name: '[bold red]x[/]'"))
    result = CliRunner().invoke(main, ["check", str(folder / "[red]a.yaml"), str(folder / "b.yaml"),
                                       "--report", str(tmp_path / "r.md"), "--report", str(tmp_path / "r.xml")])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert any(line.startswith("PASS  [/] (") for line in lines) and any(line.startswith("PASS  [bold red]x[/] (") for line in lines)
    assert "[bold]/[red]a.yaml" in result.output
    ET.parse(tmp_path / "r.xml")


def test_stats_table_prints_markup_literally(tmp_path):
    from gradlab import stats as stats_mod
    from gradlab.report import stats_table
    from gradlab.spec import load_spec

    path = tmp_path / "[bold]s.yaml"
    path.write_text(PASSING.read_text().replace("name: seed003-two-layer", "name: '[/][bold red]x[/]'"))
    result = stats_mod.run(load_spec(path), path=str(path))
    text = stats_table.render_text([result], width=200)
    assert "[/][bold red]x[/]" in text and "[bold]s.yaml" in text.replace("\n", "")
