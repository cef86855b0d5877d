"""The pytest plugin, run with pytester: specs become items, failures show the table, bad specs the SpecError."""

# pytester restores sys.modules after each in-process run, so whatever those runs import (hypothesis's
# plugin, torch through the runner) would be imported again every time: import it once, here.
import hypothesis  # noqa: F401
import pytest

import gradlab.report.failure  # noqa: F401
import gradlab.report.terminal  # noqa: F401
import gradlab.runner  # noqa: F401
from gradlab.ops import ACTIVATIONS

from .conftest import SPECS, registered
from .test_engines import BUGGY, BUGGY_SPEC

GOOD = next(p for p in SPECS if p.stem == "seed003_two_layer").read_text()


def test_spec_files_are_collected_and_pass(pytester):
    pytester.makefile(".yaml", two_layer=GOOD)
    pytester.makefile(".yml", second=GOOD.replace("seed003-two-layer", "second"))
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*second.yml::second PASSED*", "*two_layer.yaml::seed003-two-layer PASSED*"])


def test_one_item_per_device(pytester):
    pytester.makefile(".yaml", net=GOOD + 'check: {devices: [cpu, "cuda:63"]}\n')
    result = pytester.runpytest("-v", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*net.yaml::seed003-two-layer?cpu? PASSED*", "*net.yaml::seed003-two-layer?cuda:63? SKIPPED*"])


def test_failure_shows_the_comparison_table_and_worst_elements(pytester):
    pytester.makefile(".yaml", planted=BUGGY_SPEC)
    with registered(ACTIVATIONS, BUGGY):
        result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "planted  (*planted.yaml, float64, 31 params, numeric: *mode)",
        "parameter*candidate/ref*max abs*num err*max rel*worst*status*",
        "L0.weight*ana/num*fail*",
        "gradients of planted (*) disagree: 8 of 12 comparisons fail",
        "layers.0.weight: analytic vs numeric, cpu, float64 (also fails: analytic vs autograd?cpu?)",
        "  Mismatched elements: 12 / 12",
        "  Max absolute difference: *",
        "  index*| analytic*| numeric*| autograd?cpu?*| difference*",
    ])
    assert "Traceback" not in result.stdout.str()


def test_bad_spec_shows_the_spec_error_not_a_traceback(pytester):
    pytester.makefile(".yaml", typo=GOOD.replace("network:", "netwrok:"))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["invalid gradlab spec: *typo.yaml: *netwrok*did you mean 'network'*"])
    assert "Traceback" not in result.stdout.str() and "pydantic" not in result.stdout.str()


def test_other_yaml_files_are_left_alone(pytester):
    pytester.makefile(".yaml", workflow="on: push\njobs: {test: {runs-on: ubuntu-latest}}\n")
    pytester.makefile(".yaml", broken_spec=GOOD.replace("loss: {fn: sse}", "loss: {fn: sse"))  # not YAML any more
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["broken_spec.yaml::broken_spec"])
    assert "workflow" not in result.stdout.str()


HYDRA = """\
defaults: [_self_]
network: {arch: resnet18, pretrained: false}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
input: {size: 224}
"""


def test_a_hydra_style_config_is_not_a_spec(pytester):
    pytester.mkdir("configs").joinpath("train.yaml").write_text(HYDRA)
    pytester.makefile(".yaml", layers_no_type="network:\n  layers: [64, 64]\nloss: mse\ninput: {dim: 3}\n")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)
    assert "train.yaml" not in result.stdout.str() and "layers_no_type" not in result.stdout.str()


@pytest.mark.parametrize("broken", [
    GOOD.replace("units: 5", "unist: 5"),                    # a typo in a layer field
    GOOD.replace("network:", "netwrok:"),                    # a typo of `network` itself
    GOOD.replace("    - {type: dense, units: 3}", "\t- {type: dense, units: 3}"),  # a tab: not YAML
], ids=["layer-field-typo", "network-typo", "not-yaml"])
def test_a_broken_real_spec_is_still_collected_and_shows_its_error(pytester, broken):
    pytester.makefile(".yaml", broken=broken)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["invalid gradlab spec: *broken.yaml: *"])


def _nested(depth: int) -> str:
    return "data: " + "[" * depth + "]" * depth + "\n"


def test_a_deeply_nested_fixture_does_not_stop_collection(pytester):
    pytester.makefile(".yaml", deep=_nested(3000))
    pytester.makefile(".yaml", deep_map="network: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n")
    pytester.makefile(".yaml", net=GOOD)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=2)
    assert "RecursionError" not in result.stdout.str() and "deep" not in result.stdout.str()


@pytest.mark.parametrize("content", [
    _nested(3000), b"\xff\xfe\x00n\x00e\x00t", b"network:\n  layers:\n    - {type: \xff\xfe}\n", "? [a, b]\n: 1\n",
    "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                                                     for p, c in zip("abcdefgh", "bcdefghi")),
], ids=["deep", "utf16", "bad-utf8", "sequence-key", "billion-laughs"])
def test_sniffing_a_hostile_file_means_not_a_spec(tmp_path, content):
    from gradlab.pytest_plugin import _looks_like_spec

    path = tmp_path / "hostile.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert _looks_like_spec(path) is False
    assert _looks_like_spec(tmp_path / "missing.yaml") is False and _looks_like_spec(tmp_path) is False


def test_only_the_head_of_a_file_is_sniffed(tmp_path):
    """A 4 MB data fixture costs a 16 KiB read: a spec key after the head is never seen, one at the top always is."""
    from gradlab.pytest_plugin import SNIFF_BYTES, _looks_like_spec

    rows = "".join(f"  - {{id: {i}, value: {i / 7:.6f}, tags: [a, b]}}\n" for i in range(100_000))
    data = tmp_path / "data.yaml"
    data.write_text("records:\n" + rows + GOOD.replace("name:", "spec_name:"))
    assert data.stat().st_size > 4_000_000 and _looks_like_spec(data) is False
    late = tmp_path / "late.yaml"
    late.write_text("# padding\n" * (SNIFF_BYTES // 10 + 1) + GOOD)
    assert _looks_like_spec(late) is False
    big = tmp_path / "big.yaml"  # a spec whose head is cut inside its layer list: decided from the text
    big.write_text(GOOD.split("    - {type")[0] + "    - {type: dense, units: 5}\n" * 2000 + "loss: {fn: sse}\n")
    assert big.stat().st_size > SNIFF_BYTES and _looks_like_spec(big) is True


@pytest.mark.parametrize("text", [
    GOOD,
    "network:\n  layers:\n  - type: dense\n    units: 3\n",
    "network:\n  layers:\n    -   # the first layer\n      units: 3\n      type: dense\n",
    "network: {layers: [{units: 3, type: dense}]}\n",
    "input: {dim: 2}\nnetwork:\n  convention: out_in\n  layers:\n    - {type: dense, units: 3}\n",
], ids=["seed003", "block", "comment", "flow", "network-second"])
def test_the_text_fallback_recognises_every_way_of_writing_layers(text):
    from gradlab.pytest_plugin import _text_has_typed_layers

    assert _text_has_typed_layers(text) and _text_has_typed_layers(text.replace("type", "kind")) is False
    assert _text_has_typed_layers(text.replace("network", "model")) is False


IMPL_SPEC = """\
name: hostile
input: {dim: 3, batch: 2}
network:
  layers:
    - {type: dense, units: 2}
    - {type: activation, fn: custom, impl: "evil.py:Act"}
loss: {fn: sse}
"""
EVIL = """\
import pathlib, sys
pathlib.Path(__file__).with_name("MARKER").write_text("imported")
sys.exit(0)
"""


@pytest.mark.parametrize("how", ["option", "ini"])
@pytest.mark.parametrize("collect_only", [False, True], ids=["run", "collect-only"])
def test_no_code_refuses_a_spec_with_impl_before_importing_it(pytester, how, collect_only):
    from gradlab.usercode import code_allowed

    pytester.makefile(".yaml", hostile=IMPL_SPEC)
    pytester.makepyfile(evil=EVIL)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    args = ["--gradlab-no-code"] if how == "option" else []
    if how == "ini":
        pytester.makeini("[pytest]\ngradlab_no_code = true\npython_files = test_*.py\n")
    result = pytester.runpytest(*args, *(["--collect-only", "-q"] if collect_only else []))
    assert not (pytester.path / "MARKER").exists()
    assert code_allowed(), "the switch is left as it was after the run"
    if collect_only:
        result.stdout.fnmatch_lines(["hostile.yaml::hostile", "*test_plain*"])
        return
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["invalid gradlab spec: *hostile.yaml: *impl*no-code*evil.py:Act*"])


def test_a_failing_spec_with_rich_markup_and_control_characters_in_its_name(pytester):
    pytester.makefile(".yaml", planted=BUGGY_SPEC.replace("name: planted", 'name: "[/][bold red]x[/]\\e[2J"'))
    with registered(ACTIVATIONS, BUGGY):
        result = pytester.runpytest("-v")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*planted.yaml::?/??bold red?x?/??x1b?2J FAILED*", "gradients of [[]/[]][[]bold red[]]x[[]/[]]\\x1b[[]2J (*) disagree*"])
    assert "MarkupError" not in result.stdout.str() and "\x1b[2J" not in result.stdout.str()


def test_user_code_that_exits_while_loading_is_a_failing_item_not_the_end_of_pytest(pytester):
    pytester.makefile(".yaml", hostile=IMPL_SPEC)
    pytester.makepyfile(evil=EVIL)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*hostile.yaml*exit*"])
    assert "Traceback" not in result.stdout.str()


def test_a_yaml_named_on_the_command_line_is_always_a_spec(pytester):
    path = pytester.makefile(".yaml", notaspec="just: text\n")
    result = pytester.runpytest(str(path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["invalid gradlab spec: *notaspec.yaml*"])


@pytest.mark.parametrize("config", ["pytest.ini", "pyproject.toml"])
def test_collected_glob_is_configurable(pytester, config):
    if config == "pytest.ini":
        pytester.makeini("[pytest]\ngradlab_spec_glob = *.grad.yaml\n")
    else:
        pytester.makepyprojecttoml('[tool.pytest.ini_options]\ngradlab_spec_glob = ["*.grad.yaml"]\n')
    pytester.makefile(".grad.yaml", net=GOOD)
    pytester.makefile(".yaml", ignored=GOOD)
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["net.grad.yaml::seed003-two-layer"])
    assert "ignored.yaml" not in result.stdout.str()


def test_items_carry_the_gradlab_marker(pytester):
    pytester.makefile(".yaml", net=GOOD)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("-m", "not gradlab")
    result.assert_outcomes(passed=1, deselected=1)


def test_plugin_can_be_switched_off(pytester):
    pytester.makefile(".yaml", net=GOOD)
    result = pytester.runpytest("-p", "no:gradlab", "--collect-only", "-q")
    assert "net.yaml" not in result.stdout.str()


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"), SystemExit(3), MemoryError()],
                         ids=lambda e: type(e).__name__)
def test_anything_raised_while_loading_a_spec_is_a_failing_item_not_a_collection_error(pytester, monkeypatch, error):
    def load_spec(path):
        raise error

    monkeypatch.setattr("gradlab.spec.load_spec", load_spec)
    pytester.makefile(".yaml", net=GOOD)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"gradlab {type(error).__name__} while loading the spec: *net.yaml: *"])
    assert "Interrupted" not in result.stdout.str()


def test_a_hanging_op_is_a_failing_item_after_check_timeout(pytester):
    pytester.makepyfile(slow_op="import time\nclass Slow:\n    calls = 0\n    def forward(self, z):\n"
                                "        Slow.calls += 1\n        if Slow.calls > 3:\n            time.sleep(60)\n        return z\n"
                                "    def backward(self, z, g):\n        return g\n")
    pytester.makefile(".yaml", slow="""
input: {dim: 2, batch: 2}
network:
  layers:
    - {type: dense, units: 2}
    - {type: activation, fn: custom, impl: slow_op.py:Slow}
loss: {fn: sse}
check: {timeout: 2}
""")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess(timeout=60)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["gradlab error: *slow.yaml: *timed out after 2 s while running slow_op.py:Slow forward*"])


def test_zero_gradient_rows_pass_with_a_warning(pytester):
    """A spec whose gradient is exactly zero somewhere (behind a step) passes and says so as a warning;
    pytest's warn() needs a location, which a spec item reports as line 0."""
    pytester.makefile(".yaml", zero="""
name: zero
input: {dim: 3, batch: 2}
network:
  layers:
    - {type: dense, units: 2}
    - {type: activation, fn: step}
    - {type: dense, units: 1}
loss: {fn: sse}
""")
    # pytest's own PytestAssertRewriteWarning about gradlab (imported before an in-process pytester run) is not ours to count
    result = pytester.runpytest("-v", "-W", "default", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*zero-gradient for layers.0.weight*"])


def test_a_hazard_is_a_warning_of_the_item(pytester):
    """pytest says what `gradlab check` says: a dense layer left on a spatial axis is a warning, and the item passes."""
    import yaml

    from .test_hazards import NO_FLATTEN

    pytester.makefile(".yaml", cnn=yaml.safe_dump(NO_FLATTEN))
    result = pytester.runpytest("-v", "-W", "default", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*warning (dense-on-spatial-axis): network.layers[[]3]*"])  # [[] is a literal [


def test_an_item_that_leaves_something_unchecked_is_incomplete_unless_accepted(pytester, monkeypatch):
    """As `gradlab check` exits 4: a tensor every element of which sits on relu's kink, judged by no other pair."""
    from .test_supervision import KINK_ONLY

    pytester.makefile(".yaml", alone=KINK_ONLY % "analytic, numeric")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*INCOMPLETE: what was checked agrees*layers.0.bias (analytic vs numeric)*kink*",
                                 "*--gradlab-allow-unchecked*"])
    result = pytester.runpytest("--gradlab-allow-unchecked", "-W", "default", "-W", "ignore::pytest.PytestAssertRewriteWarning")
    result.assert_outcomes(passed=1, warnings=4)  # the kink rows, then what was not checked: weight and bias
    result.stdout.fnmatch_lines(["*not checked: layers.0.weight (analytic vs numeric)*", "*not checked: layers.0.bias (analytic vs numeric)*"])
    monkeypatch.setenv("GRADLAB_ALLOW_UNCHECKED", "1")
    pytester.runpytest().assert_outcomes(passed=1)
