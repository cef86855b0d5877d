"""What a client may submit, checked before anything is queued: the specs, their size and count, the options.

Validation here runs in the web process, so it must never run user code and must stay bounded:
a spec that names user code (`impl:`) is refused outright unless the server was started with
--allow-code, and even then it is only parsed here (its code is imported and validated in a worker);
every other spec goes through gradlab.spec's bounded YAML loader and the same validation as
`gradlab check`, so a bad spec gets the CLI's `file: key.path: what was expected` line. A spec's
name is a label for messages and reports; it never becomes a path.
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
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Refused(Exception):
    """The request is not queued: `status` is the HTTP status, `errors` the (spec index or None, message) pairs."""

    def __init__(self, status: int, errors: list[tuple[int | None, str]]):
        super().__init__(errors[0][1])
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
    specs = []
    for i, entry in enumerate(doc["specs"][: MAX_SPECS + 1]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("yaml"), str):
            raise Refused(422, [(i, f'specs[{i}]: expected {{"name": "a.yaml", "yaml": "<spec text>"}}')])
        specs.append((entry["name"], entry["yaml"]))
    options = parse_options(doc.get("options"))
    return Submission(counted(specs), options, options.get("label"))


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


def validate_specs(specs: list[tuple[str, str]], *, allow_code: bool) -> None:
    """Every spec validated, every problem listed: Refused(422) for bad specs; Refused(403) when every spec names user code
    on a server without it. Where only some do, the run is accepted: those specs are refused alone, each an error result
    of the run (runs.RunQueue), and the others are checked, as a local `gradlab check --no-code` does."""
    bad, code = [], []
    for i, (name, text) in enumerate(specs):
        try:
            where = _validate(name, text, allow_code=allow_code)
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


def code_refused(name: str, where: str) -> str:
    return f"{name}: {where}: names user code; this server runs no user code (start it with --allow-code to accept impl: specs)"


def user_code_key(name: str, text: str) -> str | None:
    """Where spec text names user code (`network.layers[2].impl`), or None; a SpecError when it is not YAML."""
    from ..spec import parse_yaml

    return _user_code_key(parse_yaml(text, name))


def _validate(name: str, text: str, *, allow_code: bool) -> str | None:
    """The key path of the first `impl:` (such a spec is validated in a worker), else None once the spec is valid."""
    from ..spec import max_spec_bytes, parse_yaml, validate

    cap = max_spec_bytes()
    size = len(text.encode("utf-8"))
    if size > cap:
        raise SpecError(name, "(file)", f"is {size / 2**20:.3g} MiB; a spec may be at most {cap / 2**20:.3g} MiB")
    data = parse_yaml(text, name)
    if data is None:
        raise SpecError(name, "(top level)", "the file is empty; expected a spec with input, network and loss")
    where = _user_code_key(data)
    if where is not None:
        return where
    validate(data, name, base_dir=".")  # no impl: nothing is imported, the base folder is never read
    return None


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
