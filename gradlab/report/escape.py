r"""User strings on their way into an output: spec names, file paths, parameter names, notes.

A spec's `name` and its file name are the user's, and they reach a pull-request comment, a CI
test view, a browser and a terminal. Each format gets the escaping it needs (examples as they print):

    visible   ESC [2J  ->  \x1b[2J          control characters, lone surrogates, bidi overrides shown,
                                            never obeyed (every format)
    xml_safe  the same, keeping tab and line breaks: what is left is valid XML 1.0 (JUnit)
    md_text   x</details> @octocat  ->  x&lt;/details&gt; @<ZWJ>octocat   Markdown prose, table cells
    md_code   specs/a`b.yaml  ->  ``specs/a`b.yaml``                     a code span, fenced safely
    md_html   x</summary>  ->  x&lt;/summary&gt;       inside a raw HTML block of Markdown (<details>)
    rich_text name  ->  rich Text: `[/]` is two brackets and a slash, not markup

HTML pages are escaped by jinja2's autoescape (see html.py), after `visible`. A `|` in a table
cell is the Markdown table writer's to escape (`\|`).
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, lone surrogates (cannot be encoded as UTF-8), non-characters, and the bidi
# overrides and isolates that reorder what a reader sees ("trojan source")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u202a-\u202e\u2066-\u2069]")
_UNSAFE_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u202a-\u202e\u2066-\u2069]")  # keeps \t \n \r
_LINE_BREAKS = re.compile("[\t\r\n]+")
_MENTION = re.compile(r"@(?=[A-Za-z0-9_-])")  # GitHub would notify that user or team
_ZWJ = "\u200d"  # invisible, and enough to keep `@name` from being a mention

# one pass, so that no escape is escaped again; `|` is left to the table cell writer (`\|`)
_MD = str.maketrans({c: "\\" + c for c in "\\`*_[]#~"} | {"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def _escape_one(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text) -> str:
    """`text` with every control character, lone surrogate and bidi override written as an escape."""
    return _UNSAFE.sub(_escape_one, str(text))


def xml_safe(text) -> str:
    """Like `visible`, but keeps tabs and line breaks: what is left is all in XML 1.0's character set."""
    return _UNSAFE_IN_TEXT.sub(_escape_one, str(text))


def _one_line(text) -> str:
    return visible(_LINE_BREAKS.sub(" ", str(text)))


def _no_mentions(text: str) -> str:
    return _MENTION.sub("@" + _ZWJ, text)


def md_text(text) -> str:
    """Plain text in Markdown: no HTML, no emphasis, links or headings, no @mentions, one line."""
    return _no_mentions(_one_line(text).translate(_MD))


def md_html(text) -> str:
    """Text inside a raw HTML block of a Markdown document (e.g. `<summary>`), where Markdown is not parsed."""
    return _no_mentions(_one_line(text).translate(_HTML))


def md_code(text) -> str:
    """A code span that holds `text` literally, whatever backticks it contains (mentions are not linked in code)."""
    text = _one_line(text)
    if not text.strip():
        return md_text(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def rich_text(text, style: str = ""):
    """A rich Text: square brackets in a user's string are characters, not markup."""
    from rich.text import Text

    return Text(visible(text), style=style)
