"""The hostile-input corpus (tests/hostile/, issue 9): gradlab run as users run it, in a subprocess.

Every spec in tests/hostile/*.yaml (and a few generated at test time: files over 1 MiB, a FIFO,
device files, a symlink loop) must be refused the same way: exit code 2, exactly one line
starting with `Error:` that names the file (and, where the spec's `# expect:` header says so,
the key path or the op), no traceback, a short output, and within TIME_LIMIT seconds. A spec's
`# run:` header lists the commands it goes through (default: `check`). The specs in
tests/hostile/valid/ are valid but hostile (markup, HTML, control characters in names, odd
encodings of a good file): they must pass (exit 0) and every report must stay well-formed.

The commands run concurrently (one worker per CPU), each once per session; a hang is cut at
HANG_LIMIT seconds so it fails the test instead of CI. Corpus files with no `# run:` header other
than `check` that are no bomb, hang or process-ending op are refused in a few batched processes per
command (`gradlab check a.yaml b.yaml ...`; the raw-bytes files, which go through every command, also
`gradlab report ...` and `gradlab stats ...`): starting the interpreter is most of a refusal's cost,
~0.4 s of CPU. Each spec is still judged on its own `Error:` line, and a batch that does not come back
clean (see `_split_batch`) is run again one process per spec, so batching never decides a verdict
that a process of its own would not. The time limit is TIME_LIMIT (5 s; GRADLAB_HOSTILE_TIME_LIMIT
sets another), raised on a loaded machine to LOAD_FACTOR times the
wall time of a passing `gradlab check` of specs/seed003_two_layer.yaml measured under the same
concurrency at the start of the session: refusing a spec must not take longer than checking a
small good one, and a bomb or a hang (minutes) fails either way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "hostile"
VALID = HOSTILE / "valid"
GOOD_SPEC = ROOT / "specs" / "seed003_two_layer.yaml"

TIME_LIMIT = float(os.environ.get("GRADLAB_HOSTILE_TIME_LIMIT", "5"))  # seconds per command (issue 9)
LOAD_FACTOR = 2.0  # on a loaded machine the limit is this many times a passing check of a tiny spec
HANG_LIMIT = 30  # seconds: a command still running then is killed and fails its test
OUTPUT_LIMIT = 4096  # bytes of stdout + stderr for one refused spec ("no 39 MB error line")
DATA_LIMIT = 4 << 30  # RLIMIT_DATA of each command: a runaway allocation fails in the child, not the machine

# `python -m gradlab`, under a data-size limit (runpy keeps sys.exit / signals exactly as `-m` does).
LAUNCHER = (
    "import resource, runpy, sys\n"
    "try:\n"
    "    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)\n"
    f"    lim = {DATA_LIMIT} if hard == resource.RLIM_INFINITY else min({DATA_LIMIT}, hard)\n"
    "    resource.setrlimit(resource.RLIMIT_DATA, (lim, hard))\n"
    "except (ValueError, OSError, AttributeError):\n"
    "    pass\n"
    "sys.argv = ['gradlab', *sys.argv[1:]]\n"
    "runpy.run_module('gradlab', run_name='__main__', alter_sys=True)\n"
)

# what each `# run:` word means; {spec} is the file as passed, {tmp} a fresh folder
COMMANDS = {
    "check": ["check", "{spec}"],
    "report": ["report", "{spec}", "--format", "md"],
    "stats": ["stats", "{spec}"],
    "check-html": ["check", "{spec}", "--report", "{tmp}/r.html"],
    "check-timeout": ["check", "--timeout", "1", "{spec}"],
}
# files that cannot carry a `# run:` header (raw bytes) or are plain parse failures: every command
DEFAULT_ALL = ("enc_", "empty", "only_", "top_")


def _env() -> dict:
    env = dict(os.environ)
    env.update(NO_COLOR="1", PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8")
    for key in ("FORCE_COLOR", "GRADLAB_NO_CODE", "GITHUB_STEP_SUMMARY", "PYTEST_ADDOPTS"):
        env.pop(key, None)
    return env


@dataclasses.dataclass
class Result:
    argv: list
    returncode: int | None  # None: killed after HANG_LIMIT
    output: str
    seconds: float
    tmp: Path

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("Error:")]

    def describe(self) -> str:
        head = self.output[:600] + (" ..." if len(self.output) > 600 else "")
        return f"gradlab {' '.join(map(str, self.argv))} -> exit {self.returncode} in {self.seconds:.1f} s:\n{head}"


def run_gradlab(argv, cwd: Path, tmp: Path, env: dict | None = None, timeout: float = HANG_LIMIT) -> Result:
    tmp.mkdir(parents=True, exist_ok=True)
    argv = [str(a).replace("{tmp}", str(tmp)) for a in argv]
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, *argv], cwd=cwd, env=env or _env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    seconds = time.monotonic() - start
    return Result(argv, code, out.decode("utf-8", "replace"), seconds, tmp)


# ---------------------------------------------------------------- the cases


@dataclasses.dataclass
class Case:
    id: str
    argvs: list  # one argv per command
    names: str  # what the Error line must contain to name its source (the file, or the option)
    expect: list = dataclasses.field(default_factory=list)  # further words the Error line must contain
    make: object = None  # make(tmp) -> path: a file generated at test time
    cwd: Path = HOSTILE


def _header(path: Path) -> dict:
    head = {}
    for line in path.read_bytes()[:2048].decode("utf-8", "replace").splitlines():
        m = re.match(r"#\s*(expect|run):\s*(.*)", line)
        if m:
            head[m.group(1)] = m.group(2).split()
    return head


def _file_case(path: Path) -> Case:
    head = _header(path)
    runs = head.get("run") or (["check", "report", "stats"] if path.name.startswith(DEFAULT_ALL) else ["check"])
    argvs = [[a.replace("{spec}", path.name) for a in COMMANDS[r]] for r in runs]
    return Case(path.name, argvs, path.name, head.get("expect", []))


GOOD_BODY = GOOD_SPEC.read_text()


def _huge_comment(tmp: Path) -> Path:
    path = tmp / "huge_comment_2mib.yaml"
    path.write_text("# padding\n" * 220_000 + GOOD_BODY)  # a good spec behind 2 MiB of comments
    return path


def _huge_name(tmp: Path) -> Path:
    path = tmp / "huge_name_2mib.yaml"
    path.write_text(GOOD_BODY.replace("name: seed003-two-layer", "name: " + "n" * (2 << 20)))
    return path


def _huge_layers(tmp: Path) -> Path:
    path = tmp / "huge_layers_2mib.yaml"
    layers = ", ".join(["{type: activation, fn: identity}"] * 70_000)
    path.write_text(f"name: wide\ninput: {{dim: 2}}\ntarget: {{kind: regression}}\nnetwork:\n  layers: [{layers}]\nloss: {{fn: sse}}\n")
    return path


def _huge_bad_value(tmp: Path) -> Path:
    path = tmp / "huge_bad_value.yaml"  # under the cap: the message must still stay short
    path.write_text(GOOD_BODY.replace("seed: 0", "seed: [" + ", ".join(["123456789"] * 80_000) + "]"))
    return path


def _fifo(tmp: Path) -> Path:
    path = tmp / "fifo.yaml"
    if not path.exists():
        os.mkfifo(path)  # nothing ever writes to it: reading it would block forever
    return path


def _symlink_loop(tmp: Path) -> Path:
    path = tmp / "loop.yaml"
    if not path.is_symlink():
        path.symlink_to(path.name)
    return path


def _good_copy(tmp: Path) -> Path:
    path = tmp / "good.yaml"
    path.write_text(GOOD_BODY)
    return path


def _generated() -> list[Case]:
    every = [COMMANDS["check"], COMMANDS["report"], COMMANDS["stats"]]
    cases = [
        Case("generated:huge_comment_2mib.yaml", every, "huge_comment_2mib.yaml", make=_huge_comment),
        Case("generated:huge_name_2mib.yaml", [COMMANDS["check"]], "huge_name_2mib.yaml", make=_huge_name),
        Case("generated:huge_layers_2mib.yaml", [COMMANDS["check"]], "huge_layers_2mib.yaml", make=_huge_layers),
        Case("generated:huge_bad_value.yaml", [COMMANDS["check"]], "huge_bad_value.yaml", ["seed"], make=_huge_bad_value),
        Case("generated:fifo.yaml", [COMMANDS["check"], COMMANDS["stats"]], "fifo.yaml", make=_fifo),
        Case("generated:symlink_loop.yaml", [COMMANDS["check"]], "loop.yaml", make=_symlink_loop),
        Case("device:/dev/zero", [["check", "/dev/zero"], ["report", "/dev/zero", "--format", "md"], ["stats", "/dev/zero"]],
             "/dev/zero"),
        Case("device:/dev/null", [["check", "/dev/null"]], "/dev/null"),
        Case("device:/dev/urandom", [["check", "/dev/urandom"]], "/dev/urandom"),
        # hostile command-line values: the message names the option or the file
        Case("cli:stats_lr_nan", [["stats", "{spec}", "--lr", "nan"]], "good.yaml", ["lr"], make=_good_copy),
        Case("cli:stats_lr_inf", [["stats", "{spec}", "--lr", "inf"]], "good.yaml", ["lr"], make=_good_copy),
        Case("cli:device_tpu", [["check", "{spec}", "--device", "tpu"]], "tpu", make=_good_copy),
        Case("cli:device_cuda_neg1", [["check", "{spec}", "--device", "cuda:-1"]], "cuda:-1", make=_good_copy),
        Case("cli:timeout_nan", [["check", "{spec}", "--timeout", "nan"]], "timeout", make=_good_copy),
        Case("cli:timeout_negative", [["check", "{spec}", "--timeout", "-5"]], "timeout", make=_good_copy),
    ]
    return cases


CORPUS = sorted(p for p in HOSTILE.glob("*.yaml"))
CASES = {c.id: c for c in [_file_case(p) for p in CORPUS] + _generated()}

# in a process of their own: expansion/allocation bombs, deep nesting, and user code that hangs, loops, sleeps,
# runs a shell, reads a device or floods the output. User code that raises (sys.exit, KeyboardInterrupt,
# MemoryError and RecursionError included) or returns a bad value is batched: gradlab reports it and goes on
# to the next spec (test_failing_op_does_not_stop_the_next_spec), and a batch it ended early is not clean.
SEPARATE = ("bomb_", "nest_", "batch_", "units_")
SEPARATE_IMPL = ("loop", "sleep", "os_", "dev_zero", "huge")
BATCH_SIZE = 20  # specs per batched command (a batch that is not clean is re-run spec by spec)
BATCH_WORDS = ("check", "report", "stats")  # the commands that take several specs and no per-spec option


def _batch_words(case: Case) -> list[str] | None:
    """The commands of a corpus file that may run batched: its default commands (no `# run:` header, or
    `# run: check`), when it is no bomb, hang or process-ending op and under 1 MiB; otherwise None."""
    name = case.id
    if case.make is not None or HOSTILE / name not in CORPUS or name.startswith(SEPARATE):
        return None
    if name.startswith("impl_") and any(w in name for w in SEPARATE_IMPL):
        return None
    path = HOSTILE / name
    if path.stat().st_size >= 1 << 20 or _header(path).get("run", ["check"]) != ["check"]:
        return None
    words = ["check", "report", "stats"] if name.startswith(DEFAULT_ALL) else ["check"]
    if case.argvs != [[a.replace("{spec}", name) for a in COMMANDS[w]] for w in words]:
        return None
    return words


def _batch_argv(word: str, names: list[str]) -> list[str]:
    return [x for a in COMMANDS[word] for x in (names if a == "{spec}" else [a])]


CORPUS_BATCHED = {i: w for i, c in CASES.items() if (w := _batch_words(c))}
VALID_SPECS = sorted(VALID.glob("*.yaml"))


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 60, f"tests/hostile holds {len(CORPUS)} specs; issue 9 asks for at least 60"
    assert len(VALID_SPECS) >= 5


# ---------------------------------------------------------------- running them once, concurrently


def _selected(session, param: str) -> list[str]:
    ids = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec and param in callspec.params and item.module.__name__ == __name__:
            ids.append(callspec.params[param])
    return ids


def _run_case(case: Case, tmp: Path) -> list[Result]:
    tmp.mkdir(parents=True, exist_ok=True)
    spec = case.make(tmp) if case.make else None
    cwd = spec.parent if spec is not None else case.cwd
    results = []
    for i, argv in enumerate(case.argvs):
        argv = [spec.name if (a == "{spec}" and spec is not None) else a for a in argv]
        results.append(run_gradlab(argv, cwd, tmp / f"out{i}"))
    return results


def _split_batch(names: list[str], result: Result, limit: float) -> dict[str, Result] | None:
    """Each spec's share of a batched `gradlab check` (its one Error line), or None when the batch is not clean:
    an exit code other than 2, a traceback, a line that is not an Error line naming exactly one spec of the
    batch, a spec with no line or two, or a batch slower than one command may be."""
    out = result.output
    if result.returncode != 2 or "Traceback" in out or "PWNED-BY-SPEC" in out or result.seconds >= limit:
        return None
    lines: dict[str, list[str]] = {n: [] for n in names}
    for line in out.splitlines():
        if not line.strip():
            continue
        owners = [n for n in names if line.startswith(f"Error: {n}:")]
        if len(owners) != 1:
            return None
        lines[owners[0]].append(line)
    if any(len(v) != 1 for v in lines.values()):
        return None
    return {n: Result(result.argv, result.returncode, v[0] + "\n", result.seconds, result.tmp) for n, v in lines.items()}


def _run_batch(word: str, names: list[str], tmp: Path, limit: float) -> dict[str, Result]:
    shares = _split_batch(names, run_gradlab(_batch_argv(word, names), HOSTILE, tmp / "batch"), limit)
    if shares is not None:
        return shares
    return {n: run_gradlab(_batch_argv(word, [n]), HOSTILE, tmp / re.sub(r"[^\w.-]", "_", n)) for n in names}  # one process each


class _Shares:
    """A future's look-alike for one case's commands, each a share of a batch."""

    def __init__(self, case_id: str, batches: list):
        self._id, self._batches = case_id, batches

    def result(self):
        return [batch.result()[self._id] for batch in self._batches]


@pytest.fixture(scope="session")
def hostile_results(request, tmp_path_factory):
    """Every selected case's commands, run once on a thread pool; {case id: future of [Result]}."""
    base = tmp_path_factory.mktemp("hostile")
    ids = [i for i in dict.fromkeys(_selected(request.session, "case_id")) if i in CASES]
    workers = max(1, min(8, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=workers)
    # slow cases (user code, torch) first so the pool drains evenly
    # calibration: a passing check of a small good spec, as many at once as the pool runs
    good = [pool.submit(run_gradlab, ["check", GOOD_SPEC.name], GOOD_SPEC.parent, base / f"baseline{k}") for k in range(workers)]
    baseline = max(f.result().seconds for f in good)
    limit = max(TIME_LIMIT, LOAD_FACTOR * baseline)
    batches: dict[str, list] = {}
    for word in BATCH_WORDS:
        for group in (False, True):  # specs alone, then specs with user code (which import torch): own batches
            names = [i for i in ids if word in CORPUS_BATCHED.get(i, ()) and i.startswith("impl_") == group]
            for k in range(0, len(names), BATCH_SIZE):
                chunk = names[k:k + BATCH_SIZE]
                batch = pool.submit(_run_batch, word, chunk, base / f"{word}{int(group)}_{k // BATCH_SIZE}", limit)
                for i in chunk:
                    batches.setdefault(i, []).append(batch)
    futures = {i: _Shares(i, b) for i, b in batches.items()}
    order = sorted((i for i in ids if i not in futures), key=lambda i: not i.startswith(("impl_", "stats_", "generated:")))
    futures.update({i: pool.submit(_run_case, CASES[i], base / re.sub(r"[^\w.-]", "_", i)) for i in order})
    yield futures, limit
    pool.shutdown(wait=True, cancel_futures=True)


def _assert_refused(case: Case, result: Result, limit: float = TIME_LIMIT):
    why = result.describe()
    assert result.returncode is not None, f"still running after {HANG_LIMIT} s (killed)\n{why}"
    assert "Traceback" not in result.output, why
    assert result.returncode == 2, why
    errors = result.error_lines
    assert len(errors) == 1, f"{len(errors)} lines start with 'Error:'\n{why}"
    line = errors[0]
    assert case.names in line, f"the Error line does not name {case.names!r}\n{why}"
    for word in case.expect:
        assert word in line, f"the Error line does not contain {word!r}\n{why}"
    assert len(result.output.encode()) <= OUTPUT_LIMIT, f"{len(result.output.encode())} bytes of output\n{why}"
    assert "PWNED-BY-SPEC" not in result.output, why
    assert result.seconds < limit, f"took {result.seconds:.1f} s (limit {limit:.1f} s)\n{why}"


@pytest.mark.parametrize("case_id", list(CASES))
def test_hostile_input_is_refused(case_id, hostile_results):
    futures, limit = hostile_results
    case = CASES[case_id]
    for result in futures[case_id].result():
        _assert_refused(case, result, limit)


# ---------------------------------------------------------------- valid but hostile: exit 0, well-formed reports


@pytest.fixture(scope="session")
def valid_results(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile_valid")
    names = list(dict.fromkeys(_selected(request.session, "valid_name")))
    pool = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))

    def one(name):
        tmp = base / re.sub(r"[^\w.-]", "_", name)
        argv = ["check", name, "--report", "{tmp}/r.md", "--report", "{tmp}/junit.xml", "--report", "{tmp}/r.html",
                "--report", "{tmp}/r.json"]
        return run_gradlab(argv, VALID, tmp)

    futures = {n: pool.submit(one, n) for n in names}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _control_chars(text: str) -> list[str]:
    return sorted({repr(c) for c in text if (ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127})


@pytest.mark.parametrize("valid_name", [p.name for p in VALID_SPECS])
def test_valid_hostile_spec_passes_with_wellformed_reports(valid_name, valid_results):
    result = valid_results[valid_name].result()
    why = result.describe()
    assert result.returncode is not None, f"still running after {HANG_LIMIT} s\n{why}"
    assert "Traceback" not in result.output, why
    assert result.error_lines == [], why
    assert result.returncode == 0, why
    # no raw control characters reach the terminal (an ESC from a spec name could rewrite the screen)
    assert _control_chars(result.output) == [], why
    if "[" in valid_name:  # rich markup in the file name is printed as written
        assert valid_name in result.output, why
    md = (result.tmp / "r.md").read_text(encoding="utf-8")
    assert "</details><h1>" not in md and "<h1>PASS</h1>" not in md, "a spec name lands raw in the Markdown"
    assert _control_chars(md) == [], "control characters in the Markdown report"
    html = (result.tmp / "r.html").read_text(encoding="utf-8")
    assert "<h1>PASS</h1>" not in html, "a spec name lands raw in the HTML"
    ET.parse(result.tmp / "junit.xml")  # expat refuses control characters and unescaped markup
    json.loads((result.tmp / "r.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the other exit codes, as users see them


def test_sigint_exits_130(tmp_path):
    """Ctrl-C while a custom op sleeps: exit 130 like a shell, no traceback (was 'Aborted!', exit 1)."""
    marker = tmp_path / "sleeping"
    env = _env()
    env["GRADLAB_HOSTILE_MARKER"] = str(marker)
    proc = subprocess.Popen([sys.executable, "-m", "gradlab", "check", "sleep_forever.yaml"], cwd=HOSTILE / "signals",
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + HANG_LIMIT
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"the op never started sleeping; exit {proc.poll()}"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = out.decode("utf-8", "replace")
    assert "Traceback" not in text, text
    assert proc.returncode == 130, f"exit {proc.returncode}:\n{text[:2000]}"


FAILING_OPS = {  # spec: the op its Error line names
    "impl_raise_in_backward.yaml": "RaiseInBackward",
    "impl_exit_in_forward.yaml": "ExitInForward",
    "impl_keyboard_interrupt_in_backward.yaml": "KeyboardInterruptInBackward",
}


@pytest.fixture(scope="module")
def failing_then_good(tmp_path_factory):
    """One `gradlab check bad1.yaml bad2.yaml bad3.yaml good.yaml -v --report r.json`: each failing op is
    followed by another spec (the next bad one, the last by good.yaml), which must still be checked."""
    tmp = tmp_path_factory.mktemp("failing_then_good")
    good = os.path.relpath(GOOD_SPEC, HOSTILE)
    return run_gradlab(["check", *FAILING_OPS, good, "-v", "--report", "{tmp}/r.json"], HOSTILE, tmp / "out")


@pytest.mark.parametrize("bad, op", list(FAILING_OPS.items()))
def test_failing_op_does_not_stop_the_next_spec(bad, op, failing_then_good):
    """`gradlab check bad.yaml ... good.yaml --report r.json`: exit 2, one Error line per bad spec naming its
    op, and the spec after it (good.yaml after the last) is still checked."""
    result = failing_then_good
    why = result.describe()
    assert result.returncode == 2, why
    assert "Traceback" not in result.output, why
    errors = result.error_lines
    assert len(errors) == len(FAILING_OPS), why  # every bad spec was reached: none stopped the run
    mine = [e for e in errors if e.startswith(f"Error: {bad}:")]
    assert len(mine) == 1 and op in mine[0] and "ops_" in mine[0], why
    assert "seed003-two-layer" in result.output and "L0.weight" in result.output, f"the good spec's table is missing\n{why}"
    report = result.tmp / "r.json"
    assert report.exists(), f"no report written\n{why}"
    assert "seed003-two-layer" in report.read_text()


def test_audit_reports_sys_exit_as_a_counterexample(tmp_path):
    """`gradlab audit` of an op whose backward calls sys.exit(0): a `raised` finding (exit 1), not a silent exit 0."""
    result = run_gradlab(["audit", "ops_exit.py:ExitInBackward", "--examples", "20"], HOSTILE, tmp_path)
    why = result.describe()
    # (the counterexample may quote the user's own traceback: that is the finding, not a crash of gradlab)
    assert result.returncode == 1, why
    assert "raised" in result.output and "sys.exit" in result.output and "ExitInBackward" in result.output, why


# ---------------------------------------------------------------- the batch's bookkeeping


def _batch_result(output: str, code: int = 2, seconds: float = 1.0) -> Result:
    return Result(["check", "a.yaml", "b.yaml"], code, output, seconds, Path("."))


def test_a_batch_is_split_into_one_error_line_per_spec():
    shares = _split_batch(["a.yaml", "b.yaml"], _batch_result("Error: b.yaml: seed: no\nError: a.yaml: input.dim: no\n"), 5)
    assert {n: r.error_lines for n, r in shares.items()} == {"a.yaml": ["Error: a.yaml: input.dim: no"],
                                                              "b.yaml": ["Error: b.yaml: seed: no"]}


@pytest.mark.parametrize("output, code, seconds", [
    ("Error: a.yaml: no\n", 2, 1.0),  # b.yaml was not refused (checked, or never reached)
    ("Error: a.yaml: no\nb-net  pass\n", 2, 1.0),  # b.yaml passed: a line that is no Error line
    ("Error: a.yaml: no\nError: a.yaml: again\nError: b.yaml: no\n", 2, 1.0),  # two lines for a.yaml
    ("Error: a.yaml: no\nError: b.yaml: no\nTraceback (most recent call last):\n", 2, 1.0),
    ("Error: a.yaml: no\nError: b.yaml: no\n", 3, 1.0),  # an internal error
    ("Error: a.yaml: no\nError: b.yaml: no\n", None, 30.0),  # killed
    ("Error: a.yaml: no\nError: b.yaml: no\n", 2, 6.0),  # slower than one command may be
    ("Error: a.yaml: no\nError: c.yaml, b.yaml: no\n", 2, 1.0),  # a line that names no spec at its start
], ids=["missing", "passed", "twice", "traceback", "exit3", "killed", "slow", "unnamed"])
def test_a_batch_that_is_not_clean_is_run_spec_by_spec(output, code, seconds):
    assert _split_batch(["a.yaml", "b.yaml"], _batch_result(output, code, seconds), 5) is None
