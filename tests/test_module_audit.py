"""`gradlab audit FILE:Module --kind module`: autograd's parameter and input gradients against forward-only differences."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradlab.cli import main
from gradlab.kernels import modules

ROOT = Path(__file__).resolve().parent.parent
TORCH = str(ROOT / "tests/kernel_targets/torch_modules.py")
CUSTOM = str(ROOT / "tests/kernel_targets/custom_modules.py")


def audit(target, *args):
    result = CliRunner().invoke(main, ["audit", target, "--kind", "module", *map(str, args)])
    return result.exit_code, result.output


@pytest.mark.parametrize("name", ["Conv2d", "LayerNorm", "MultiheadAttention"])
def test_torch_layers_pass(name):
    code, out = audit(f"{TORCH}:{name}", "--examples", 6)
    assert code == 0, out
    assert "PASS: no counterexample in 6 examples" in out
    assert "grad weight" in out or "grad in_proj_weight" in out


def test_wrong_weight_gradient_inside_a_custom_function_is_named():
    code, out = audit(f"{CUSTOM}:MeanLinear", "--examples", 20)
    assert code == 1, out
    assert "FAIL  mismatch: grad weight:" in out  # the weight only: bias and input gradients are right
    assert "grad weight: wrong at [" in out
    case = out.split("case: ")[1].split()[0]
    assert case.startswith("x=2,6")  # shrunk: a batch of one hides the bug, two is the smallest that shows it
    again = modules.audit_module(f"{CUSTOM}:MeanLinear", case=case)
    assert not again.passed and [c.name for c in again.result.failure[1] if not c.passed] == ["grad weight"]


def test_the_wrong_layer_of_a_block_is_named_and_projections_localise():
    code, out = audit(f"{CUSTOM}:Block", "--examples", 20, "--format", "json")
    assert code == 1
    doc = json.loads(out)
    bad = {t["name"]: t for t in doc["counterexample"]["tensors"] if not t["passed"]}
    assert list(bad) == ["grad second.weight"]
    assert bad["grad second.weight"]["wrong"] and all(len(w["index"]) == 2 for w in bad["grad second.weight"]["wrong"])
    assert doc["counterexample"]["reproduce"].startswith('python -c "from gradlab.kernels.modules import reproduce')
    big = modules.audit_module(f"{CUSTOM}:Block", case="x=7,6|values=normal|seed=3")
    first = {v.name: v for v in big.result.failure[1]}
    assert first["grad first.weight"].mode == "projections" and first["grad first.weight"].passed


def test_numeric_method_complex_step_only_where_it_agrees():
    ok = modules.audit_module(f"{CUSTOM}:FusedLinear", examples=3)
    assert ok.passed and ok.subject.method == "complex_step"
    conv = modules.audit_module(f"{TORCH}:Conv2d", examples=1)  # torch's complex conv loses a 1e-20 imaginary part
    assert conv.passed and conv.subject.method == "richardson" and "disagree" in conv.subject.method_note


def test_init_dict_dropout_and_output_file(tmp_path):
    code, out = audit(f"{CUSTOM}:Wide", "--examples", 4)  # built from the class's `init` dict
    assert code == 0, out
    code, out = audit(f"{CUSTOM}:Dropped", "--examples", 4)  # dropout: the same mask in every forward
    assert code == 0, out
    target = tmp_path / "audit.json"
    code, out = audit(f"{CUSTOM}:FusedLinear", "--examples", 3, "--format", "json", "--output", target)
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["passed"] is True


@pytest.mark.parametrize("target, message", [
    (f"{CUSTOM}:NeedsArgs", "without width"),
    (str(ROOT / "tests/kernel_targets/second_order.py:ScaledTanh"), "needs an nn.Module"),
    (f"{CUSTOM}:Nope", "Nope"),
])
def test_load_and_contract_errors_exit_2(target, message):
    code, out = audit(target)
    assert code == 2, out
    assert out.startswith("Error:") and message in out and len(out.strip().splitlines()) == 1


def test_a_module_that_raises_exits_2_and_a_refused_size_is_only_skipped(tmp_path):
    path = tmp_path / "mods.py"
    path.write_text(
        "import torch\n"
        "class Conv(torch.nn.Conv2d):\n"
        "    def __init__(self):\n"
        "        super().__init__(2, 3, kernel_size=5)\n"
        "    @staticmethod\n"
        "    def example_inputs():\n"
        "        return {'input': (2, 2, 9, 9)}\n"
        "class Boom(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.w = torch.nn.Parameter(torch.ones(3))\n"
        "    def forward(self, x):\n"
        "        raise ValueError('nope')\n"
        "def example_inputs():\n"
        "    return {'x': (3,)}\n")
    code, out = audit(f"{path}:Conv", "--examples", 10)  # sizes below the kernel raise: other draws, not a finding
    assert code == 0, out
    code, out = audit(f"{path}:Boom")
    assert code == 2 and "raised ValueError: nope" in out


def test_kinks_are_not_judged_and_the_rest_still_is():
    audit = modules.audit_module(f"{CUSTOM}:Rectified", case="x=5,6|values=zeros|seed=1")  # 30 elements: projections
    assert audit.passed, audit.result.failure
    x = audit.result.worst["grad x"]
    assert x.mode == "projections" and 0 < x.kinks < 30 and x.ratio < 1 and "not judged" in x.note


def test_the_module_is_built_the_same_every_time_and_the_callers_generator_is_left_alone():
    """Its init comes from a seeded generator: the table, the wrong elements and the reproduce line are the same in
    every run (the docs execute this example), and torch's global generator is where the caller left it."""
    import re

    import torch

    from gradlab.kernels.report import module_text

    def table():
        text = module_text(modules.audit_module(f"{CUSTOM}:Block", examples=5))
        return re.sub(r"\(\d+\.\d+ s\)", "", text)

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = table()
    assert torch.rand(1) == expected_next  # the audit drew nothing from the caller's generator
    torch.manual_seed(999)  # another global state: the module's init must not follow it
    assert table() == first and "FAIL" in first
