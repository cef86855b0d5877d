"""Every shell example in README.md and docs/ runs, and prints what the page says it prints.

Block format (Markdown fences):

  ```console
  $ gradlab check specs/seed003_two_layer.yaml
  PASS  seed003-two-layer (specs/seed003_two_layer.yaml): 12 pass in 0.02 s
  $ gradlab audit tests/audit_targets/wrong.py:SigmoidClippedAbove10    # exit 1
  ...
  ```

- Each `$ ` line is a command; the lines up to the next `$ ` line are its expected output (stdout and
  stderr as a terminal shows them). A trailing `# exit N` comment is the expected exit code (else 0).
- Commands run in this process with click's CliRunner against `gradlab.cli.main` (a subprocess costs a
  torch import, ~1.4 s of CPU each), in a temporary copy of the folders the examples read, so files they
  write never land in the checkout. `gradlab ...` and `cat FILE` run; `| head -n N` / `| tail -n N` may
  follow either.
- Compared after normalising what legitimately varies: timings (`0.23 s`, `12 ms`), the temporary folder,
  runs of spaces and of `─` (column widths follow the numbers), and numbers below 1e-9 in magnitude
  (rounding noise, which differs between machines). A line `...` in the expected output stands for any
  number of lines.
- A shell block that cannot run here (pip, pytest, `gradlab serve`, curl) has `<!-- not-executed: why -->`
  on the line before its fence. `bash`/`sh`/`shell` blocks must carry it; a `console` block (or an untagged
  block starting with `$ `) without it must run. So an example can neither go stale nor escape the test.

Refresh the expected outputs after a deliberate change of gradlab's output:

    GRADLAB_UPDATE_EXAMPLES=1 .venv/bin/python -m pytest tests/test_docs_examples.py

rewrites each command's output in place (keeping the lines around a `...`), then review the diff.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_INFO = {"console", "bash", "sh", "shell", "shell-session"}
MUST_MARK = {"bash", "sh", "shell"}  # commands without output: sketches, never compared
MARKER = re.compile(r"^<!--\s*not-executed:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")
UPDATE = os.environ.get("GRADLAB_UPDATE_EXAMPLES", "") not in ("", "0")
# what the examples read, copied into the temporary working folder
NEEDED = ["specs", "examples", "docs/examples", "tests/audit_targets", "tests/kernel_targets", "tests/diagnosis_targets"]


@dataclass
class Command:
    line: str  # as written after `$ `, without the exit comment
    exit_code: int
    expected: list[str]
    lineno: int  # 0-based line of the `$ ` line in the page


@dataclass
class Block:
    page: Path
    start: int  # 0-based line of the opening fence
    end: int  # 0-based line of the closing fence
    info: str
    indent: str
    lines: list[str]
    marker: str | None  # the not-executed reason
    commands: list[Command] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.start + 1}"

    @property
    def is_shell(self) -> bool:
        first = next((ln.strip() for ln in self.lines if ln.strip()), "")
        return self.info in SHELL_INFO or (self.info == "" and first.startswith("$ "))


def parse(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.groups()
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence)) and lines[j].strip().strip(fence[0]) == ""):
            j += 1
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : j]]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = MARKER.match(lines[k].strip()) if k >= 0 else None
        block = Block(page, i, j, info.lower(), indent, body, marker.group(1) if marker else None)
        if block.is_shell:
            blocks.append(block)
        i = j + 1
    for b in blocks:
        if b.info in MUST_MARK or b.marker is not None:
            continue
        for n, text in enumerate(b.lines):
            if text.startswith("$ "):
                cmd = text[2:]
                code = 0
                m = EXIT.search(cmd)
                if m:
                    code, cmd = int(m.group(1)), cmd[: m.start()]
                b.commands.append(Command(cmd.strip(), code, [], b.start + 1 + n))
            elif b.commands:
                b.commands[-1].expected.append(text)
            elif text.strip():
                raise AssertionError(f"{b.id}: output before the first `$ ` command: {text!r}")
    return blocks


BLOCKS = [b for page in PAGES for b in parse(page)]
RUN = [b for b in BLOCKS if b.marker is None and b.info not in MUST_MARK]


# --- running ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs-examples")
    for rel in NEEDED:
        if (ROOT / rel).exists():
            shutil.copytree(ROOT / rel, root / rel, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def _pipe(stage: list[str], out: str) -> str:
    lines = out.splitlines(keepends=True)
    if stage[:2] in (["head", "-n"], ["tail", "-n"]) and len(stage) == 3 and stage[2].isdigit():
        n = int(stage[2])
        return "".join(lines[:n] if stage[0] == "head" else lines[-n:] if n else [])
    raise AssertionError(f"cannot run `{' '.join(stage)}` here: only `| head -n N` and `| tail -n N` (or mark the block not-executed)")


def execute(command: str, cwd: Path) -> tuple[int, str]:
    """Run one documented command line in this process; (gradlab's exit code, what the terminal shows)."""
    from gradlab.cli import main

    tokens = shlex.split(command, comments=True)
    stages: list[list[str]] = [[]]
    for t in tokens:
        if t == "|":
            stages.append([])
        else:
            stages[-1].append(t)
    first, *pipes = stages
    env = {"GRADLAB_NO_SUPERVISOR": "1", "FORCE_COLOR": None, "NO_COLOR": "1", "GITHUB_STEP_SUMMARY": None,
           "GRADLAB_ALLOW_UNCHECKED": None, "GRADLAB_NO_CODE": None, "GRADLAB_DEBUG": None, "COLUMNS": None}
    while first and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", first[0]):
        name, value = first.pop(0).split("=", 1)
        env[name] = value
    if first[:1] == ["gradlab"]:
        from gradlab.usercode import forbid_code

        old = os.getcwd()
        os.chdir(cwd)
        try:
            result = CliRunner().invoke(main, first[1:], env=env, catch_exceptions=False)
        finally:
            os.chdir(old)
            forbid_code(False)  # --no-code sets a process-wide switch: one example's flag must not reach the next
        code, out = result.exit_code, result.output
    elif first[:1] == ["cat"] and len(first) == 2:
        code, out = 0, (cwd / first[1]).read_text(encoding="utf-8")
    else:
        raise AssertionError(f"cannot run `{command}` in a test: only `gradlab ...` and `cat FILE` (or mark the block not-executed)")
    for stage in pipes:
        out = _pipe(stage, out)
    return code, out


# --- comparing --------------------------------------------------------------------------------------------

TIME = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:s|ms|min)\b")
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")


def _tiny(m: re.Match) -> str:
    try:
        value = float(m.group(0))
    except ValueError:
        return m.group(0)
    return "<tiny>" if value != 0 and abs(value) < 1e-9 or value == 0 and "e" in m.group(0).lower() else m.group(0)


def normalise(line: str, tmp: Path) -> str:
    line = line.replace(str(tmp), "<tmp>").replace(str(tmp.resolve()), "<tmp>")
    line = TIME.sub("<time>", line)
    line = NUMBER.sub(_tiny, line)
    line = re.sub("─+", "─", line)
    return re.sub(r"\s+", " ", line).strip()


def matches(expected: list[str], actual: list[str], tmp: Path) -> bool:
    exp = [normalise(x, tmp) for x in expected]
    act = [normalise(x, tmp) for x in actual]
    while exp and exp[-1] == "":
        exp.pop()
    while act and act[-1] == "":
        act.pop()

    def rec(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i] == "...":
            return any(rec(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and exp[i] == act[j] and rec(i + 1, j + 1)

    return rec(0, 0)


def refreshed(expected: list[str], actual: list[str]) -> list[str]:
    """The new expected output: the actual one, abridged where the old one had a `...`."""
    actual = list(actual)
    while actual and not actual[-1].strip():
        actual.pop()
    if "..." not in [x.strip() for x in expected]:
        return actual
    first = [x.strip() for x in expected].index("...")
    last = len(expected) - 1 - [x.strip() for x in expected][::-1].index("...")
    head, tail = first, len(expected) - 1 - last
    if head + tail >= len(actual):
        return actual
    return actual[:head] + [expected[first]] + (actual[-tail:] if tail else [])


UPDATES: dict[Path, dict[int, list[str]]] = {}


@pytest.fixture(scope="module", autouse=True)
def _write_updates():
    yield
    for page, blocks in UPDATES.items():
        lines = page.read_text(encoding="utf-8").splitlines()
        for start in sorted(blocks, reverse=True):
            block = next(b for b in BLOCKS if b.page == page and b.start == start)
            lines[start + 1 : block.end] = [block.indent + x if x else x for x in blocks[start]]
        page.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_example_prints_what_the_page_says(block: Block, workdir: Path):
    if any("CUDA is not available" in line for c in block.commands for line in c.expected):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this example shows a machine without CUDA")
    assert block.commands, f"{block.id}: a shell block with no `$ ` command; mark it <!-- not-executed: why --> or add the command"
    new: list[str] = []
    problems = []
    for cmd in block.commands:
        code, out = execute(cmd.line, workdir)
        actual = out.splitlines()
        where = f"{block.page.relative_to(ROOT)}:{cmd.lineno + 1}: $ {cmd.line}"
        if code != cmd.exit_code:
            problems.append(f"{where}\n  exit code {code}, the page says {cmd.exit_code}")
        if not matches(cmd.expected, actual, workdir):
            problems.append(f"{where}\n  the page says:\n    " + "\n    ".join(cmd.expected) + "\n  it prints:\n    " + "\n    ".join(actual))
        exit_note = f"    # exit {code}" if code else ""
        original = block.lines[cmd.lineno - block.start - 1]
        keep = EXIT.sub("", original[2:]) if EXIT.search(original) else original[2:]
        new.append("$ " + keep.rstrip() + exit_note)
        new.extend(cmd.expected if matches(cmd.expected, actual, workdir) else refreshed(cmd.expected, actual))
    if UPDATE:
        if problems:
            UPDATES.setdefault(block.page, {})[block.start] = new
        return
    assert not problems, "\n\n".join(problems) + "\n\n(after a deliberate change: GRADLAB_UPDATE_EXAMPLES=1 .venv/bin/python -m pytest tests/test_docs_examples.py)"


def test_every_shell_block_runs_or_says_why_not():
    """The parametrized test above runs every unmarked block; here: nothing escapes it unmarked."""
    assert len([b for b in BLOCKS if b.page.name == "README.md"]) >= 5, "the README's tour examples were not found"
    problems = []
    for b in BLOCKS:
        if b.marker is not None:
            if not b.marker:
                problems.append(f"{b.id}: not-executed needs a reason")
        elif b.info in MUST_MARK:
            problems.append(f"{b.id}: a ```{b.info} block is never run: write it as ```console with its output, or mark it <!-- not-executed: why -->")
        elif not b.commands:
            problems.append(f"{b.id}: a shell block with no `$ ` command")
    assert not problems, "\n".join(problems)
    assert {b.id for b in RUN} == {b.id for b in BLOCKS if b.marker is None}


def test_normalisation_keeps_what_matters(tmp_path):
    """Timings and rounding noise are forgiven; a changed count, verdict or gradient is not."""
    assert matches(["PASS  a (a.yaml): 12 pass in 0.02 s"], ["PASS  a (a.yaml): 12 pass in 1.35 s"], tmp_path)
    assert not matches(["PASS  a (a.yaml): 12 pass in 0.02 s"], ["PASS  a (a.yaml): 11 pass in 0.02 s"], tmp_path)
    assert matches(["L0.weight  ana/num  5.6e-17  pass"], ["L0.weight   ana/num   0.0e+00   pass"], tmp_path)
    assert not matches(["(0)  11  1  4.539580774e-05"], ["(0)  11  1  4.539580775e-05"], tmp_path)
    assert matches(["a", "...", "z"], ["a", "b", "c", "z"], tmp_path) and not matches(["a", "...", "z"], ["a", "b"], tmp_path)
    assert refreshed(["a", "...", "z"], ["A", "b", "c", "Z"]) == ["A", "...", "Z"]
    assert matches([f"wrote {tmp_path}/r.json"], ["wrote <tmp>/r.json"], tmp_path)


# --- the layout page names every module ------------------------------------------------------------------

def test_layout_names_every_module():
    page = (ROOT / "docs" / "reference" / "layout.md").read_text(encoding="utf-8")
    block = page.split("```text", 1)[1].split("```", 1)[0]
    modules = sorted(p.name for p in (ROOT / "gradlab").glob("*.py")) + sorted(
        p.name + "/" for p in (ROOT / "gradlab").iterdir() if p.is_dir() and (p / "__init__.py").exists())
    missing = [m for m in modules if not re.search(rf"(?<![\w/]){re.escape(m)}", block)]
    assert not missing, f"docs/reference/layout.md's tree does not name: {', '.join(missing)}"
    for folder in ("specs/layers/", "specs/stats/", "specs/custom/", "reports/", "docs/"):
        assert folder in block, folder
