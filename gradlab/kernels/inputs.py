"""Declared inputs (`example_inputs()` or --shapes) and the cases drawn from them.

A declaration maps each argument name to a shape -- `{"x": (8, 64), "w": (64,)}` -- or, for an integer
input, to `{"shape": (8,), "dtype": "int64", "high": 10}` (values drawn from [0, high)). On the command
line: `--shapes 'x=8,64;w=64;labels=8:int<10'` (an empty shape, `s=`, is a scalar).

Equal declared sizes are one size: drawing 64 -> 37 changes every 64 in every argument (and an integer
`high` of 64), so shapes stay consistent (x's features and w's length). A case is the drawn sizes, a value
style and a seed; the values themselves come from torch generators seeded with it, so a case is a short
string (`x=3,5;w=5|values=zeros|seed=7`) that --case replays exactly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch

from ..userops.loading import TargetError, inspecting, is_file, load_module
from .. import memory
from ..usercode import user_code

VALUE_STYLES = ("normal", "zeros", "large", "small", "offset")  # simplest first: the shrinker moves left
_INT_DTYPES = {"int": torch.int64, "int64": torch.int64, "long": torch.int64, "int32": torch.int32}


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]
    integer: str | None = None  # None for a floating input, else a key of _INT_DTYPES
    high: int | None = None

    def text(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{self.name}={dims}" + (f":{self.integer}<{self.high}" if self.integer else "")


@dataclass(frozen=True)
class Case:
    specs: tuple[InputSpec, ...]  # with the drawn sizes
    values: str = "normal"
    seed: int = 0

    def text(self) -> str:
        return ";".join(s.text() for s in self.specs) + f"|values={self.values}|seed={self.seed}"


def specs_text(specs) -> str:
    return ";".join(s.text() for s in specs)


def _dims(text: str, where: str) -> tuple[int, ...]:
    text = text.strip().strip("()[]")
    if not text:
        return ()
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip() != "")
    except ValueError:
        raise TargetError(f"{where}: expected sizes like 8,64, got {text!r}") from None
    if any(d < 1 for d in dims):
        raise TargetError(f"{where}: sizes must be >= 1, got {text!r}")
    return dims


def parse_shapes(text: str, option: str = "--shapes") -> tuple[InputSpec, ...]:
    """'x=8,64;w=64;labels=8:int<10' -> InputSpecs; any mistake is one TargetError naming the part."""
    specs: list[InputSpec] = []
    parts = [p.strip() for p in str(text).split(";") if p.strip()]
    if not parts:
        raise TargetError(f"{option}: expected name=sizes entries separated by ';' (e.g. 'x=8,64;w=64'), got {text!r}")
    for part in parts:
        name, sep, rest = part.partition("=")
        name = name.strip()
        where = f"{option}: {part!r}"
        if not sep or not name.isidentifier():
            raise TargetError(f"{where}: expected name=sizes (e.g. x=8,64)")
        if any(s.name == name for s in specs):
            raise TargetError(f"{where}: {name!r} is declared twice")
        integer = high = None
        if ":" in rest:
            rest, _, kind = rest.partition(":")
            dt, lt, hi = kind.partition("<")
            if dt.strip() not in _INT_DTYPES or not lt:
                raise TargetError(f"{where}: an integer input is written name=sizes:int<HIGH (e.g. labels=8:int<10)")
            integer = dt.strip()
            try:
                high = int(hi)
            except ValueError:
                raise TargetError(f"{where}: HIGH must be an integer, got {hi!r}") from None
            if high < 1:
                raise TargetError(f"{where}: HIGH must be >= 1")
        specs.append(InputSpec(name, _dims(rest, where), integer, high))
    if option == "--shapes":  # --case replays one case at exactly its sizes: parse_case bounds it without the search's growth
        _bounded(specs, option, f"declare smaller sizes with {option}")
    return tuple(specs)


def _bounded(specs, where: str, fix: str, growth: int = memory.KERNEL_SIZE_GROWTH) -> None:
    """Refuse inputs whose largest drawn case would not fit (gradlab.memory), before anything is allocated."""
    memory.check_kernel_inputs(where, {s.name: s.shape for s in specs}, fix, growth=growth)


def parse_case(text: str) -> Case:
    """'x=3,5;w=5|values=zeros|seed=7' (what a report's reproduce line carries) -> the Case."""
    shapes, *rest = str(text).split("|")
    options = {}
    for item in rest:
        k, sep, v = item.partition("=")
        if not sep or k.strip() not in ("values", "seed"):
            raise TargetError(f"--case: expected SHAPES|values=STYLE|seed=N, got {text!r}")
        options[k.strip()] = v.strip()
    values = options.get("values", "normal")
    if values not in VALUE_STYLES:
        raise TargetError(f"--case: values must be one of {', '.join(VALUE_STYLES)}, got {values!r}")
    try:
        seed = int(options.get("seed", "0"))
    except ValueError:
        raise TargetError(f"--case: seed must be an integer, got {options['seed']!r}") from None
    specs = parse_shapes(shapes, "--case")
    _bounded(specs, "--case", "replay a case with smaller sizes", growth=1)
    return Case(specs, values, seed)


def _from_object(decl: Any, where: str) -> tuple[InputSpec, ...]:
    if not isinstance(decl, dict) or not decl:
        raise TargetError(f"{where}: expected a dict {{argument name: shape}}, got {type(decl).__name__}")
    specs = []
    for name, shape in decl.items():
        w = f"{where}: {name!r}"
        if isinstance(shape, dict):
            dt = str(shape.get("dtype", "int64")).replace("torch.", "")
            if dt not in _INT_DTYPES or "high" not in shape:
                raise TargetError(f"{w}: a dict declares an integer input: {{'shape': (8,), 'dtype': 'int64', 'high': 10}}")
            specs.append(InputSpec(str(name), _shape(shape.get("shape", ()), w), dt, int(shape["high"])))
        else:
            specs.append(InputSpec(str(name), _shape(shape, w)))
    return tuple(specs)


def _shape(shape: Any, where: str) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise TargetError(f"{where}: expected a shape (a tuple of sizes), got {shape!r}") from None
    if any(d < 1 for d in dims):
        raise TargetError(f"{where}: sizes must be >= 1, got {dims}")
    return dims


def _home(spec: str):
    """The file or module the target was loaded from (an instance of a torch class lives in the user's file,
    while its __module__ names torch's)."""
    source, _, _ = spec.rpartition(":")
    if is_file(source):
        return load_module(source)
    return sys.modules.get(source)


def declared(raw_candidate: Any, spec: str, *, shapes_option: bool = True) -> tuple[InputSpec, ...]:
    """The candidate's `example_inputs` (an attribute or method of it, else a function in the file or module that
    TARGET names, else in the module that defines the candidate's class). `shapes_option`: the command has --shapes
    (compare does, a module audit does not), so messages may point at it."""
    alternative = ", or declare them with --shapes 'x=8,64'" if shapes_option else ""
    where = f"{spec}: example_inputs"
    with inspecting(spec):
        source = getattr(raw_candidate, "example_inputs", None)
        for module in (_home(spec), sys.modules.get(getattr(raw_candidate, "__module__", "") or "")):
            if source is None and module is not None:
                source = getattr(module, "example_inputs", None)
    if source is None:
        raise TargetError(f"{spec}: no example_inputs() in the candidate or its module; " + (
            "declare the inputs with --shapes 'x=8,64;w=64'" if shapes_option else "define example_inputs() -> {'x': (8, 64)} on the module or in its file"))
    if callable(source):
        with user_code(f"{where}()"):
            source = source()
    specs = _from_object(source, where)
    _bounded(specs, where, f"return smaller shapes from example_inputs(){alternative}")
    return specs


def sizes(specs) -> list[int]:
    """Every distinct declared size, in first-seen order (integer `high`s included)."""
    seen: list[int] = []
    for s in specs:
        for d in (*s.shape, *((s.high,) if s.high else ())):
            if d not in seen:
                seen.append(d)
    return seen


def resize(specs, mapping: dict[int, int]) -> tuple[InputSpec, ...]:
    return tuple(InputSpec(s.name, tuple(mapping.get(d, d) for d in s.shape), s.integer,
                           mapping.get(s.high, s.high) if s.high else None) for s in specs)


def _values(style: str, shape, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if style == "zeros":
        x = torch.where(torch.rand(shape, generator=gen, dtype=torch.float64) < 0.3, torch.zeros_like(x), x)
    elif style == "large":
        x = x * 100.0
    elif style == "small":
        x = x * 1e-3
    elif style == "offset":
        x = x + 100.0  # a large mean over small spread: cancellation in anything that centres
    return x


def build(case: Case, dtype: torch.dtype, device: str) -> dict[str, torch.Tensor]:
    """The case's inputs, floating ones drawn in float64 and rounded to `dtype` (all three runs start from these)."""
    gen = torch.Generator().manual_seed(case.seed)
    out = {}
    for s in case.specs:
        if s.integer:
            out[s.name] = torch.randint(0, s.high, s.shape, generator=gen, dtype=_INT_DTYPES[s.integer]).to(device)
        else:
            out[s.name] = _values(case.values, s.shape, gen).to(dtype).to(device)
    return out


def cotangent(shape, seed: int, index: int) -> torch.Tensor:
    """The one random cotangent for output `index`, in float64 (cast for each run)."""
    gen = torch.Generator().manual_seed(10_007 * (seed + 1) + index)
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float64)


def parameter_values(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Fresh float64 values for a module's parameters (the init's ones and zeros hide bugs)."""
    gen = torch.Generator().manual_seed(7_919 * (seed + 1))
    return {n: torch.randn(s, generator=gen, dtype=torch.float64) for n, s in shapes.items()}
