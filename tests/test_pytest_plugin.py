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
    pytester.makefile(".yaml", broken_spec="network: [unclosed\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["broken_spec.yaml::broken_spec"])
    assert "workflow" not in result.stdout.str()


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
