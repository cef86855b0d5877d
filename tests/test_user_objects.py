"""The user's objects are the user's: whatever they do where gradlab looks at them is reported as the user's
error (exit 2, one `Error:` line naming the file or op), a contract counterexample of the op, or refused up
front when it would be unbounded work -- never an internal error of gradlab (exit 3), never a pass.

In-process (CliRunner on gradlab.cli.main, or the functions themselves): each test costs well under a second.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlab.audit import audit
from gradlab.cli import main
from gradlab.usercode import describe, user_line

TARGETS = Path(__file__).parent / "audit_targets"
OBJECTS = TARGETS / "user_objects.py"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def target(name: str) -> str:
    return f"{OBJECTS}:{name}"


def refused(args: list[str], *fragments: str) -> str:
    """Run gradlab in-process; it must exit 2 with exactly one `Error:` line holding every fragment, no traceback."""
    result = CliRunner().invoke(main, args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# --- 5: internal errors caused by the user's objects ---------------------------------------------


def test_an_exception_whose_str_raises_is_described_not_reraised():
    from tests.audit_targets.user_objects import Unprintable

    assert describe(Unprintable()) == "raised Unprintable: <__str__ of the user's object raised RuntimeError>"

    class BadRepr:
        def __repr__(self):
            raise ValueError

    assert describe(SystemExit(BadRepr())) == "called sys.exit(<__repr__ of the user's object raised ValueError>)"


def test_a_forward_raising_an_unprintable_exception_is_the_ops_finding():
    result = audit(target("ForwardRaisesUnprintable"), examples=5)
    assert [f.kind for f in result.findings] == ["raised"]
    assert "raised Unprintable" in result.findings[0].message


@pytest.mark.parametrize("name, fragment", [
    ("GetattrRaises", "raised RuntimeError: no attribute kind here"),
    ("ForwardPropertyRaises", "raised RuntimeError: property boom"),
])
def test_an_attribute_read_that_raises_is_the_users_error(name, fragment):
    refused(["audit", target(name), "--examples", "5"], "user_objects.py:" + name, fragment, "(user_objects.py, line", "AttributeError")


def test_an_attribute_read_that_raises_in_a_spec_names_the_impl_key(write_spec):
    spec = write_spec(f"""
name: getattr
input: {{dim: 3, batch: 2}}
target: {{kind: regression}}
network:
  layers:
    - {{type: dense, units: 2}}
    - {{type: activation, fn: custom, impl: "{target('ForwardPropertyRaises')}"}}
loss: {{fn: sse}}
""")
    refused(["check", str(spec), "-q"], "network.layers[1].impl", "property boom")


def test_a_negative_input_shape_is_refused():
    refused(["audit", target("NegativeInputShape"), "--examples", "5"],
            "user_objects.py:NegativeInputShape", "input_shape must be a tuple of positive integers", "(-3, 4)")


def test_a_symlink_loop_is_the_users_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink("b.py", "a.py")
    os.symlink("a.py", "b.py")
    refused(["audit", "a.py:Op"], "a.py: is a symlink loop")
    refused(["audit", "a.py"], "a.py: is a symlink loop")


def test_example_inputs_of_a_trillion_elements_are_refused_up_front():
    refused(["compare", target("tanh_candidate"), target("tanh_reference"), "--examples", "2"],
            "user_objects.py:tanh_candidate: example_inputs", "limit 2 GiB", "return smaller shapes from example_inputs()")


# --- 6: unbounded work refused up front ----------------------------------------------------------


def test_compare_shapes_beyond_the_memory_limit_are_refused_up_front():
    gelu = EXAMPLES / "kernels" / "gelu.py"
    refused(["compare", f"{gelu}:FusedGelu", f"{gelu}:reference", "--shapes", "x=100000,100000"],
            "--shapes", "10,000,000,000 input elements", "limit 2 GiB", "declare smaller sizes with --shapes")
    refused(["compare", f"{gelu}:FusedGelu", f"{gelu}:reference", "--case", "x=100000,100000|values=normal|seed=1"],
            "--case", "limit 2 GiB")


@pytest.mark.parametrize("name", ["HugeInputShape", "HugeLayer"])
def test_an_audited_layer_with_a_huge_input_shape_is_refused_up_front(name):
    refused(["audit", target(name), "--examples", "5"], f"user_objects.py:{name}", "x (1000000, 1000000)",
            "over gradlab audit's limit of", "declare a smaller input_shape")


def test_an_audit_file_with_huge_dims_is_refused_at_its_key(tmp_path):
    (tmp_path / "audit.yaml").write_text(f"""
ops:
  - target: {EXAMPLES / 'audit' / 'layers.py'}:leaky_forward
    inputs: {{x: [N, D]}}
    dims: {{N: {{min: 1, max: 1000000}}, D: 1000000}}
    hyper: {{slope: [0.01, 0.2]}}
""")
    refused(["audit", str(tmp_path / "audit.yaml")], "audit.yaml: ops[0].dims:", "x (1000000, 1000000)", "lower the dimensions' max")


CONV_NET = """
name: conv-stats
input: {shape: [3, 32, 32], batch: 8}
target: {kind: onehot, classes: 10}
network:
  init: {scheme: he_normal}
  layers:
    - {type: conv2d, channels: 16, kernel: 3, padding: 1}
    - {type: activation, fn: relu}
    - {type: conv2d, channels: 32, kernel: 3, padding: 1}
    - {type: activation, fn: relu}
    - {type: maxpool2d, kernel: 2, stride: 2}
    - {type: flatten}
    - {type: dense, units: 10}
loss: {fn: softmax_cross_entropy}
"""


def test_stats_work_counts_a_convs_weights_at_every_position(write_spec):
    """87k weights, but 5.4M multiply-adds per sample: 10,000 seeds were accepted (about 40 minutes of work)."""
    from gradlab import memory
    from gradlab.spec import load_spec

    spec = write_spec(CONV_NET + "stats: {seeds: 10000}\n")
    refused(["stats", str(spec), "-q"], "stats.seeds:", "5,409,812 multiply-adds per sample", "budget of 3e+10", "use at most 693 seed(s)")
    small = load_spec(write_spec(CONV_NET, "plain.yaml"))
    assert memory.forward_macs(small) == 5_409_812  # 16*27*1024 + 32*144*1024 + 8192*10 + biases, + units
    refused(["stats", str(write_spec(CONV_NET, "cli.yaml")), "--seeds", "10000", "-q"], "--seeds:", "multiply-adds per sample")


# --- 7: what a backward returns ------------------------------------------------------------------


@pytest.mark.parametrize("name, what", [
    ("ComplexBackward", "complex values (complex128)"),
    ("StrBackward", "a str ('nope')"),
    ("DictBackward", "a dict ({'z': array([2.])})"),
    ("GeneratorBackward", "a generator"),
    ("ObjectArrayBackward", "an array of object"),
    ("double_forward", "a str ('nope')"),  # a function pair: was `backward raised TypeError: ufunc 'isnan'` from gradlab's own check
    ("cube_forward", "complex values (complex128)"),  # a function pair: passed, the imaginary part dropped
    ("StatefulStrBackward", "a str ('nope')"),
])
def test_a_backward_returning_no_real_array_is_a_contract_finding(name, what, recwarn):
    result = audit(target(name), examples=5)
    assert [f.kind for f in result.findings] == ["contract"], [f.message for f in result.findings]
    message = result.findings[0].message
    assert f"backward returned {what} as the gradient for" in message and "expected a real float64 ndarray" in message, message
    assert not [w for w in recwarn if "Complex" in type(w.message).__name__]  # no ComplexWarning flood


# --- 8: messages that name the user's file, line and key -----------------------------------------


def test_an_audit_file_names_its_backward_key_not_a_cli_flag(tmp_path):
    layers = EXAMPLES / "audit" / "layers.py"
    (tmp_path / "audit.yaml").write_text(f"ops:\n  - target: {layers}:grad_reverse\n  - target: {layers}:rbf_forward\n    backward: nope\n")
    line = refused(["audit", str(tmp_path / "audit.yaml")], "audit.yaml: ops[1].backward:", "defines no function 'nope'")
    assert "--backward" not in line


def test_an_audit_file_entry_that_cannot_load_is_named_by_its_key(tmp_path):
    (tmp_path / "audit.yaml").write_text(f"ops:\n  - target: {target('GetattrRaises')}\n")
    refused(["audit", str(tmp_path / "audit.yaml")], "audit.yaml: ops[0].target:", "no attribute kind here")


@pytest.mark.parametrize("name, at", [
    ("json_at_import.py", "(json_at_import.py, line 4)"),  # was json's decoder line
    ("sibling_fails.py", "(sibling_helper.py, line 2)"),  # was line 2 with no file: the sibling's line in this file's name
])
def test_an_import_error_points_at_the_users_file_and_line(name, at):
    refused(["audit", f"{TARGETS / 'user_imports' / name}:Op"], f"{name}: cannot import", at)


def test_a_file_that_cannot_compile_never_points_at_gradlabs_loader(tmp_path):
    (tmp_path / "nul.py").write_bytes(b"class Op:\n    pass\n\x00\n")
    line = refused(["audit", f"{tmp_path / 'nul.py'}:Op"], "nul.py: cannot import", "null bytes")
    assert "line" not in line.split("null bytes")[1]  # was `(line 105)`: gradlab's loader


def test_user_line_skips_gradlab_and_the_standard_library():
    import json

    try:
        json.loads("{bad")
    except ValueError as exc:
        assert user_line(exc) == f" (test_user_objects.py, line {exc.__traceback__.tb_lineno})"


@pytest.mark.parametrize("value, message", [('"2"', "expected an integer, got '2'"), ("-1", "expected a number >= 1, got -1")])
def test_spec_key_paths_carry_no_pydantic_internals(write_spec, value, message):
    text = (Path(__file__).resolve().parents[1] / "specs" / "layers" / "small_cnn.yaml").read_text()
    spec = write_spec(text.replace("kernel: 3, stride: 1, padding: 1", f"kernel: 3, stride: {value}, padding: 1"))
    line = refused(["check", str(spec), "-q"], "network.layers[0].stride: " + message)
    assert "constrained" not in line and "more problem" not in line  # was `stride.constrained-int: ... (and 1 more problem)`


def test_an_unknown_key_is_shown_as_written():
    from gradlab.spec import _describe

    err = {"loc": ("network", "layers", 0, "conv2d"), "type": "unknown_key", "ctx": {"key": "constrained-int"}, "msg": "unknown key"}
    assert _describe(err)[0] == "network.layers[0].constrained-int"


SWISH = '''
import numpy as np

class Swish:
    def forward(self, z):
        return z / (1.0 + np.exp(-z))

    def backward(self, z, grad_out):
        s = 1.0 / (1.0 + np.exp(-z))
        return grad_out * (s + z * s * (1.0 - s))
'''


def test_gradlabs_own_searches_leave_no_hypothesis_folder_in_the_working_directory(tmp_path, monkeypatch):
    """Hypothesis caches the constants of local modules in .hypothesis/constants (under the working directory it
    was imported in) on every search, database=None or not: a fresh user module must not be cached there."""
    from hypothesis import configuration

    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    op = tmp_path / "swish_ops.py"
    op.write_text(SWISH + f"\nMARK = {os.getpid()}.{id(tmp_path)}\n")  # a source never cached before
    default = getattr(configuration, "__hypothesis_home_directory_default") / "constants"  # ./.hypothesis at import

    def cached_in(folder: Path) -> bool:
        return folder.is_dir() and any(str(op) in p.read_text(errors="replace") for p in folder.iterdir() if p.is_file())

    before = getattr(configuration, "__hypothesis_home_directory", None)
    assert audit(f"{op}:Swish", examples=3).passed
    assert not cached_in(default)
    assert cached_in(tmp_path / "cache" / "gradlab" / "hypothesis" / "constants")  # Hypothesis' cache went to gradlab's
    assert getattr(configuration, "__hypothesis_home_directory", None) == before  # the user's own setting is back


def test_an_audited_forward_returning_a_huge_view_is_refused_naming_the_op():
    """Was `Error: out of memory; shrink the network or batch` (no file, no op), or the machine's OOM killer."""
    refused(["audit", target("BroadcastForward"), "--examples", "3"], "user_objects.py:BroadcastForward: forward returned 10,000,000,000 elements",
            "audit it on smaller shapes")


def test_a_compared_kernel_returning_a_huge_view_is_refused_naming_it():
    refused(["compare", target("expand_candidate"), target("expand_reference"), "--shapes", "x=4", "--examples", "2"],
            "user_objects.py:expand_reference: returned 40,000,000,000 output elements", "declare smaller sizes")


def test_memory_errors_in_gradlabs_handling_name_the_op(monkeypatch):
    from gradlab.audit import search
    from gradlab.audit.search import run

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(search, "search", exhausted)
    from gradlab.audit import prepare
    from gradlab.audit.judge import tolerance
    from gradlab.userops.loading import TargetError

    with pytest.raises(TargetError, match="StrBackward: out of memory while auditing it"):
        run(prepare(target("StrBackward")), examples=1, tol=tolerance())


def test_a_module_audit_with_huge_example_inputs_is_refused_up_front():
    line = refused(["audit", f"{TARGETS / 'user_module_huge.py'}:Linear", "--kind", "module", "--examples", "2"],
                   "user_module_huge.py:Linear: example_inputs", "limit 2 GiB", "return smaller shapes from example_inputs()")
    assert "--shapes" not in line  # gradlab audit has no --shapes


HOSTILE = Path(__file__).parent / "hostile"


@pytest.mark.parametrize("spec, message", [
    ("impl_string_backward.yaml", "StringBackward backward returned a str, not an array"),  # was `raised ValueError: could not convert string to float`
    ("impl_none_backward.yaml", "NoneBackward backward returned None, not an array"),  # was `returned shape (), expected (4, 2)`
])
def test_a_spec_ops_bad_return_is_reported_as_a_return_not_as_raising(spec, message):
    line = refused(["check", str(HOSTILE / spec), "-q"], message)
    assert "raised" not in line


def test_a_spec_custom_layer_declaring_a_huge_input_is_refused_before_its_probe(write_spec):
    spec = write_spec(f"""
name: huge-layer
input: {{dim: 3, batch: 2}}
target: {{kind: regression}}
network:
  layers:
    - {{type: custom, impl: "{target('HugeFeaturesLayer')}"}}
loss: {{fn: sse}}
""")
    refused(["check", str(spec), "-q"], "network.layers[0].impl", "1,000,000,000,000 input elements per sample", "limit 2 GiB")


def test_a_target_that_is_no_file_says_what_was_expected():
    refused(["audit", "/dev/zero:Op"], "/dev/zero: is not a regular file; expected a Python file (path/to/file.py:Name")


def test_a_function_whose_apply_returns_no_tensor_is_a_contract_finding():
    result = audit(target("StrFunction"), examples=3)
    assert [f.kind for f in result.findings] == ["contract"]  # was `raised TypeError` from gradlab's own check
    assert "forward returned a str ('x')" in result.findings[0].message


def test_an_attribute_read_that_raises_in_an_installed_package_is_the_users_error(tmp_path, monkeypatch):
    """A dotted target's frames live under site-packages, which user_line skips as a library; they are still the user's."""
    package = tmp_path / "site-packages" / "gradlab_test_userpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ops.py").write_text(OBJECTS.read_text())
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    refused(["audit", "gradlab_test_userpkg.ops:GetattrRaises", "--examples", "2"], "gradlab_test_userpkg.ops:GetattrRaises: reading its attributes raised RuntimeError")


def test_a_modules_state_dict_that_raises_is_the_users_error():
    modules = TARGETS / "user_modules.py"
    refused(["compare", f"{modules}:StateDictRaises", f"{modules}:Linear", "--examples", "2"],
            "user_modules.py:StateDictRaises: state_dict() raised RuntimeError: no state for you (user_modules.py, line")
