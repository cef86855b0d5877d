"""What a client may submit, checked before anything is queued: the specs, their size and count, the options.

Validation here runs in the web process, so it must never run user code and must stay bounded:
a spec that names user code (`impl:`) is refused outright unless the server was started with
--allow-code, and even then it is only parsed here (its code is imported and validated in a worker);
every other spec goes through gradlab.spec's bounded YAML loader and the same validation as
`gradlab check`, so a bad spec gets the CLI's `file: key.path: what was expected` line. A spec's
name is a label for messages and reports; it never becomes a path.

A spec may come with the op files its `impl:` paths name (`impl: "../ops/swish.py:Swish"`): each is matched to
one of those paths (as written, or by its file name), which must be relative and plain (letters, digits, `.`,
`_`, `-`, `+` per part, leading `..` only, ending in .py); the worker writes it there, relative to the spec, in
the run's private temporary folder. They are stored with the run and shown in it, and run only with --allow-code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from ..errors import GradlabError, SpecError

MAX_SPECS = 100  # specs in one run
MAX_BODY_BYTES = 8 * 2**20  # one request
MAX_NAME = 300
MAX_FILES = 32  # op files sent with one spec
MAX_FILE_BYTES = 2**20  # one op file
MAX_UP = 16  # leading `..` of an impl path (the worker nests the spec this deep in its temporary folder)
_PART = re.compile(r"[A-Za-z0-9_+\-][A-Za-z0-9_.+\-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Refused(Exception):
    """The request is not queued: `status` is the HTTP status, `errors` the (spec index or None, message) pairs."""

    def __init__(self, status: int, errors: list[tuple[int | None, str]]):
        super().__init__("\n".join(message for _, message in errors))  # every problem, one a line (`errors` pairs them with indexes)
        self.status, self.errors = status, errors


class RunOptions(BaseModel):
    """`options` of POST /api/runs: the `gradlab check` options that change what runs, plus a label."""

    model_config = ConfigDict(extra="forbid")
    devices: Annotated[list[Annotated[str, Field(pattern=r"^(cpu|cuda(:\d{1,3})?)$")]], Field(max_length=16)] | None = None
    engines: Annotated[list[Literal["analytic", "numeric", "autograd"]], Field(min_length=2, max_length=3)] | None = None
    method: Literal["auto", "central", "richardson", "complex_step"] | None = None
    mode: Literal["auto", "full", "fast"] | None = None
    stats: StrictBool = False
    timeout: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)] | None = None
    label: Annotated[str, Field(max_length=200)] | None = None


@dataclass
class Submission:
    specs: list[tuple[str, str]]  # (name, YAML text), in order
    options: dict
    label: str | None
    files: dict[int, list[tuple[str, str]]] | None = None  # spec index -> [(file name as sent, text)]: its op files


def parse_options(raw: Any) -> dict:
    if raw is None:
        raw = {}
    try:
        options = RunOptions.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("options", *err["loc"]))
        raise Refused(422, [(None, f"{where}: {err['msg']}")]) from None
    if options.engines is not None and len(set(options.engines)) < 2:
        raise Refused(422, [(None, "options.engines: expected at least two different engines of analytic, numeric, autograd")])
    return options.model_dump(exclude_none=True)


def from_json(doc: Any) -> Submission:
    """`{"specs": [{"name", "yaml"}, ...], "options": {...}}`."""
    if not isinstance(doc, dict) or not isinstance(doc.get("specs"), list):
        raise Refused(422, [(None, 'body: expected {"specs": [{"name": "a.yaml", "yaml": "<spec text>"}, ...], "options": {...}}')])
    unknown = set(doc) - {"specs", "options"}
    if unknown:
        raise Refused(422, [(None, f"body.{sorted(unknown)[0]}: unknown key; expected specs and options")])
    specs, files = [], {}
    for i, entry in enumerate(doc["specs"][: MAX_SPECS + 1]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("yaml"), str):
            raise Refused(422, [(i, f'specs[{i}]: expected {{"name": "a.yaml", "yaml": "<spec text>"}}')])
        specs.append((entry["name"], entry["yaml"]))
        sent = entry.get("files")
        if sent is not None:
            if not isinstance(sent, list) or not all(isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("text"), str)
                                                     for f in sent):
                raise Refused(422, [(i, f'specs[{i}].files: expected [{{"name": "../ops/swish.py", "text": "<the file>"}}, ...]')])
            files[i] = [(f["name"], f["text"]) for f in sent]
    options = parse_options(doc.get("options"))
    return Submission(counted(specs), options, options.get("label"), files or None)


def decode_upload(name: str, raw: bytes) -> str:
    """An uploaded spec file's text: UTF-8 (a BOM is dropped), as `gradlab check` reads files."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Refused(422, [(None, f"{_label(name)}: (file): not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                                   "save the spec as UTF-8")]) from None


def counted(specs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """At least one spec, at most MAX_SPECS, each with a printable name."""
    if not specs:
        raise Refused(422, [(None, "specs: expected at least one spec")])
    if len(specs) > MAX_SPECS:
        raise Refused(413, [(None, f"specs: at most {MAX_SPECS} specs in one run; split the submission")])
    from ..executors import plain_name  # the worker's rule for the name it writes the spec under

    for i, (name, _) in enumerate(specs):
        if len(name) > MAX_NAME or _CONTROL.search(name) or plain_name(name) is None:
            raise Refused(422, [(i, f"specs[{i}].name: expected a spec file name such as net.yaml (its last part: letters, digits, "
                                    f"'.', '_', '-', '+'; at most {MAX_NAME} characters in all), got {name[:80]!r}")])
    return specs


def validate_specs(specs: list[tuple[str, str]], *, allow_code: bool) -> list[SpecFacts]:
    """Every spec validated, every problem listed: Refused(422) for bad specs; Refused(403) when every spec names user code
    on a server without it. Where only some do, the run is accepted: those specs are refused alone, each an error result
    of the run (runs.RunQueue), and the others are checked, as a local `gradlab check --no-code` does.
    Returns what the queue needs to know of each spec (SpecFacts), read while the spec was parsed here, once."""
    bad, code, facts = [], [], []
    for i, (name, text) in enumerate(specs):
        try:
            where, timeout = _validate(name, text, allow_code=allow_code)
            facts.append(SpecFacts(where, timeout))
        except SpecError as exc:
            bad.append((i, str(exc)))
            continue
        except GradlabError as exc:  # e.g. the memory estimate
            bad.append((i, f"{name}: {exc}"))
            continue
        if where is not None and not allow_code:
            code.append((i, code_refused(name, where)))
    if bad:
        raise Refused(422, bad)
    if code and len(code) == len(specs):  # nothing could be checked
        raise Refused(403, code)
    return facts


@dataclass(frozen=True)
class SpecFacts:
    """What the queue needs of a spec before it runs: where it names user code (None: nowhere), its check.timeout."""

    code: str | None
    timeout: float | None


def spec_facts(name: str, text: str) -> SpecFacts | None:
    """A stored spec's facts, read again (a run queued before a restart); None when the text is not a spec."""
    from ..spec import declared_timeout, parse_yaml

    try:
        data = parse_yaml(text, name)
        return SpecFacts(_user_code_key(data), declared_timeout(data))
    except Exception:  # noqa: BLE001 - the worker reports what is wrong with it
        return None


def match_files(specs: list[tuple[str, str]], files: dict[int, list[tuple[str, str]]] | None) -> dict[int, list[tuple[str, str]]]:
    """Each spec's op files under the impl path they stand for (normalised, relative to the spec): {index: [(path, text)]}.

    A file is matched to one of the spec's `impl:` file paths, as written or by its last part; one that matches
    none, a path that is absolute or not plain, a file too large or too many are Refused(422) against that spec."""
    matched: dict[int, list[tuple[str, str]]] = {}
    problems = []
    for i, sent in sorted((files or {}).items()):
        name = specs[i][0]
        try:
            matched[i] = _match(name, specs[i][1], sent)
        except _Bad as exc:
            problems.append((i, f"{_label(name)}: {exc}"))
        except SpecError as exc:  # not YAML: validate_specs says so
            problems.append((i, str(exc)))
    if problems:
        raise Refused(422, problems)
    return matched


class _Bad(Exception):
    pass


def _match(name: str, text: str, sent: list[tuple[str, str]]) -> list[tuple[str, str]]:
    from ..spec import parse_yaml

    if len(sent) > MAX_FILES:
        raise _Bad(f"files: {len(sent)} op files; at most {MAX_FILES} with one spec")
    wanted = {}  # normalised impl path -> as written
    for where, target in impl_targets(parse_yaml(text, name)):
        source = target.rpartition(":")[0]
        if source.endswith(".py") or "/" in source or "\\" in source:
            try:
                wanted.setdefault(plain_relative(source, where), source)
            except _Bad:  # an absolute path (the server's own file) or an odd one: nothing can be sent for it
                continue
    out: dict[str, str] = {}
    for j, (fname, body) in enumerate(sent):
        if len(body.encode("utf-8")) > MAX_FILE_BYTES:
            raise _Bad(f"files[{j}] {fname[:100]!r}: larger than {MAX_FILE_BYTES // 2**10} KiB")
        key = _normpath(fname)
        if key not in wanted:
            same = [k for k in wanted if k.rsplit("/", 1)[-1] == fname.replace("\\", "/").rsplit("/", 1)[-1]]
            if len(same) != 1:
                names = ", ".join(repr(w) for w in wanted.values()) or "no file"
                raise _Bad(f"files[{j}] {fname[:100]!r}: the spec's impl: paths name {names}; send each op file under one of those")
            key = same[0]
        if key in out:
            raise _Bad(f"files[{j}] {fname[:100]!r}: {wanted[key]!r} sent twice")
        out[key] = body
    return sorted(out.items())


def plain_relative(source: str, where: str = "impl") -> str:
    """An impl file path as the worker may write it: relative, `..` only in front, plain parts; normalised with '/'."""
    path = _normpath(source)
    parts = path.split("/")
    up = 0
    while up < len(parts) and parts[up] == "..":
        up += 1
    rest = parts[up:]
    if (source.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", source) or up > MAX_UP or not rest
            or not all(_PART.fullmatch(p) for p in rest) or not path.endswith(".py")):
        raise _Bad(f"{where}: {source[:100]!r} cannot be sent with the spec: an op file sent to a server must be a relative "
                   f"path of plain names ('..' only in front, at most {MAX_UP}) ending in .py")
    return path


def _normpath(path: str) -> str:
    import posixpath

    return posixpath.normpath(path.replace("\\", "/"))


def impl_targets(data: Any, path: str = ""):
    """(key path, value) of every string `impl:` in the spec."""
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{path}.{key}" if path else str(key)
            if key == "impl" and isinstance(value, str):
                yield here, value
            else:
                yield from impl_targets(value, here)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from impl_targets(value, f"{path}[{i}]")


def code_refused(name: str, where: str) -> str:
    return f"{name}: {where}: names user code; this server runs no user code (start it with --allow-code to accept impl: specs)"


def user_code_key(name: str, text: str) -> str | None:
    """Where spec text names user code (`network.layers[2].impl`), or None; a SpecError when it is not YAML."""
    from ..spec import parse_yaml

    return _user_code_key(parse_yaml(text, name))


def _validate(name: str, text: str, *, allow_code: bool) -> tuple[str | None, float | None]:
    """(the key path of the first `impl:` (such a spec is validated in a worker) or None once the spec is valid, the
    spec's check.timeout or None)."""
    from ..spec import declared_timeout, max_spec_bytes, parse_yaml, validate

    cap = max_spec_bytes()
    size = len(text.encode("utf-8"))
    if size > cap:
        raise SpecError(name, "(file)", f"is {size / 2**20:.3g} MiB; a spec may be at most {cap / 2**20:.3g} MiB")
    data = parse_yaml(text, name)
    if data is None:
        raise SpecError(name, "(top level)", "the file is empty; expected a spec with input, network and loss")
    where, timeout = _user_code_key(data), declared_timeout(data)
    if where is not None:
        return where, timeout
    validate(data, name, base_dir=".")  # no impl: nothing is imported, the base folder is never read
    return None, timeout


def _user_code_key(data: Any, path: str = "") -> str | None:
    """`network.layers[2].impl`: where the spec names user code, depth-first (the loader already bounded the depth)."""
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{path}.{key}" if path else str(key)
            if key == "impl":
                return here
            found = _user_code_key(value, here)
            if found:
                return found
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found = _user_code_key(value, f"{path}[{i}]")
            if found:
                return found
    return None


def _label(name: str) -> str:
    return name[:MAX_NAME] if not _CONTROL.search(name) else repr(name[:80])
