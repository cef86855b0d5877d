"""`gradlab compare`: the FlashAttention rule, the search, the examples in examples/kernels/."""

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gradlab.cli import main
from gradlab.kernels.rule import judge, noise

ROOT = Path(__file__).resolve().parent.parent
LN = str(ROOT / "examples/kernels/layernorm.py")
SC = str(ROOT / "examples/kernels/scatter.py")


@pytest.fixture(autouse=True)
def _code_allowed():
    from gradlab.usercode import forbid_code

    yield
    forbid_code(False)  # --no-code is process-wide; one test's switch must not reach the next


def run(*args):
    result = CliRunner().invoke(main, ["compare", *map(str, args)])
    return result.exit_code, result.output


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_correct_layernorm_passes(dtype):
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--dtype", dtype, "--examples", 25)
    assert code == 0, out
    assert "PASS: 25 example(s)" in out


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_buggy_layernorm_fails_on_grad_x_with_a_reproduce_line(dtype):
    code, out = run(f"{LN}:BuggyLayerNorm", f"{LN}:reference", "--dtype", dtype, "--examples", 25)
    assert code == 1, out
    assert "FAIL: grad x beyond the bound" in out
    line = out.split("reproduce:")[1].strip().splitlines()[0]
    assert "--case" in line and f"--dtype {dtype}" in line
    case = line.split("--case ")[1].strip("'")
    again, out2 = run(f"{LN}:BuggyLayerNorm", f"{LN}:reference", "--dtype", dtype, "--case", case)
    assert again == 1 and f"case: {case}" in out2


def test_rule_arithmetic_on_hand_made_tensors():
    ref = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    ref_low = torch.tensor([1.0, 2.0, 3.01], dtype=torch.float64)  # err_low 0.01
    cand = torch.tensor([1.0, 2.05, 3.0], dtype=torch.float64)  # err_cand 0.05 at index 1
    c = judge("grad x", cand, ref, ref_low, low_dtype=torch.bfloat16, factor=2.0)
    assert c.err_cand == pytest.approx(0.05) and c.err_low == pytest.approx(0.01)
    # bf16: 3 + 0.3 - 0.3 rounds (spacing 1/64 at [2, 4)); the noise is twice the worst rounding, >= one ulp at max|ref|
    assert c.noise == noise(ref, torch.bfloat16) and c.noise >= 2.0 ** -6
    assert c.bound == pytest.approx(2 * 0.01 + c.noise)
    assert c.index == (1,) and c.cand == pytest.approx(2.05) and c.ref == 2.0
    assert c.passed == (0.05 <= c.bound) and c.ratio == pytest.approx(0.05 / c.bound)
    exact = judge("o", ref, ref, ref, low_dtype=torch.float32)
    assert exact.passed and exact.ratio == 0.0
    nan = judge("o", torch.tensor([float("nan"), 2.0]), ref[:2], ref[:2], low_dtype=torch.float16)
    assert not nan.passed and math.isinf(nan.err_cand) and "not finite" in nan.note
    assert not judge("o", ref[:2], ref, ref, low_dtype=torch.float16).passed  # shape mismatch


MODULES = '''
import torch
import torch.nn.functional as F

def example_inputs():
    return {"x": (4, 16)}

class Reference(torch.nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.lin = torch.nn.Linear(width, width)
    def forward(self, x):
        return torch.tanh(self.lin(x))

class Fused(Reference):
    """tanh(xW^T + b), computed in float32 whatever the dtype."""
    def forward(self, x):
        return torch.tanh(F.linear(x.float(), self.lin.weight.float(), self.lin.bias.float())).to(x.dtype)

class Broken(Reference):
    def forward(self, x):
        return torch.tanh(F.linear(x, self.lin.weight, self.lin.bias * 1.05))

def reference_fn(x, lin_weight, lin_bias):
    return torch.tanh(x @ lin_weight.T + lin_bias)

class Other(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 16)
'''


@pytest.fixture
def modules(tmp_path):
    path = tmp_path / "mods.py"
    path.write_text(MODULES)
    return str(path)


def test_module_candidate_shares_parameters_with_reference_module(modules):
    code, out = run(f"{modules}:Fused", f"{modules}:Reference", "--examples", 15)
    assert code == 0, out
    assert "grad lin.weight" in out and "grad lin.bias" in out and "grad x" in out
    code, out = run(f"{modules}:Fused", f"{modules}:reference_fn", "--examples", 10)  # parameters passed by name
    assert code == 0, out
    code, out = run(f"{modules}:Broken", f"{modules}:Reference", "--examples", 15, "--init", '{"width": 16}')
    assert code == 1 and "FAIL" in out and "--init" in out
    code, out = run(f"{modules}:Fused", f"{modules}:Other")
    assert code == 2 and out.count("Error:") == 1 and "do not match" in out


@pytest.mark.parametrize("shapes", ["x", "x=8,a", "x=0", "x=8;x=8", "=8", "labels=8:int<", "labels=8:float<3"])
def test_bad_shapes_exit_2_with_one_error_line(shapes):
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--shapes", shapes)
    assert code == 2, out
    assert out.startswith("Error: --shapes") and len(out.strip().splitlines()) == 1


def test_shapes_option_and_load_errors():
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--shapes", "x=3,24;w=24;b=24", "--examples", 5)
    assert code == 0, out
    code, out = run(f"{LN}:NoSuchThing", f"{LN}:reference")
    assert code == 2 and out.startswith("Error:") and "NoSuchThing" in out
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--shapes", "x=3,24;w=5;b=24", "--examples", 3)
    assert code == 2 and out.startswith("Error:") and "--case" in out  # user code raised: named, with the case
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--no-code")
    assert code == 2 and "user code is switched off" in out


def test_determinism_caught_and_tolerated():
    code, out = run(f"{SC}:GatherRows", f"{SC}:reference", "--dtype", "float32", "--examples", 3, "--determinism", 10)
    assert code == 1 and "determinism: FAIL" in out and "differ" in out
    code, out = run(f"{SC}:GatherRowsSorted", f"{SC}:reference", "--dtype", "float32", "--examples", 3, "--determinism", 10)
    assert code == 0 and "determinism: PASS" in out, out
    code, out = run(f"{SC}:GatherRows", f"{SC}:reference", "--dtype", "float32", "--case", "table=12,16;index=200:int64<12|values=normal|seed=0",
                    "--determinism", 10, "--nondet-tol", "1e-3")
    assert "determinism: PASS" in out, out


def test_json_document(tmp_path):
    target = tmp_path / "out.json"
    code, out = run(f"{LN}:BuggyLayerNorm", f"{LN}:reference", "--examples", 10, "--format", "json", "--output", target)
    assert code == 1
    doc = json.loads(target.read_text())
    assert doc["passed"] is False and doc["dtype"] == "bfloat16" and doc["ref_dtype"] == "float64"
    failed = [c for c in doc["failure"]["checks"] if not c["passed"]]
    assert failed[0]["name"] == "grad x" and set(failed[0]["worst"]) == {"index", "cand", "ref", "ref_low"}
    assert failed[0]["ratio"] > 1 and doc["failure"]["reproduce"].startswith("gradlab compare")


def test_cuda_refused_without_a_device():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--device", "cuda")
    assert code == 2 and "no CUDA device" in out


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_cuda_device(dtype):
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--device", "cuda", "--dtype", dtype, "--examples", 10)
    assert code == 0, out
    code, out = run(f"{LN}:BuggyLayerNorm", f"{LN}:reference", "--device", "cuda", "--dtype", dtype, "--examples", 10)
    assert code == 1 and "--device cuda" in out.split("reproduce:")[1], out


# --- --double-backward and --forward-ad ---------------------------------------------------------------

GELU = str(ROOT / "examples/kernels/gelu.py")
SECOND = str(ROOT / "tests/kernel_targets/second_order.py")


@pytest.mark.parametrize("dtype", ["bfloat16", "float64"])
def test_double_backward_differentiable_function_passes(dtype):
    code, out = run(f"{SECOND}:ScaledTanh", f"{SECOND}:reference", "--double-backward", "--dtype", dtype, "--examples", 8)
    assert code == 0, out
    assert "hvp x" in out and "hvp s" in out and "not supported" not in out
    if dtype == "float64":
        assert "hvp x vs differences" in out


def test_double_backward_detached_term_fails_naming_the_input():
    code, out = run(f"{SECOND}:ScaledTanhXDetached", f"{SECOND}:reference", "--double-backward", "--examples", 8)
    assert code == 1, out
    assert "FAIL: hvp x beyond the bound" in out  # x only: every term involving s is still right
    line = out.split("reproduce:")[1].strip().splitlines()[0]
    assert "--double-backward" in line
    case = line.split("--case ")[1].strip("'")
    again, out2 = run(f"{SECOND}:ScaledTanhXDetached", f"{SECOND}:reference", "--double-backward", "--case", case)
    assert again == 1 and "hvp x" in out2
    code, out = run(f"{SECOND}:ScaledTanhXDetached", f"{SECOND}:reference", "--examples", 8)
    assert code == 0, out  # the first order alone cannot see it


def test_double_backward_float64_differences_name_the_wrong_elements():
    code, out = run(f"{SECOND}:ScaledTanhXDetached", f"{SECOND}:reference", "--double-backward", "--dtype", "float64",
                    "--case", "x=10,12;s=10,12|values=normal|seed=3")
    assert code == 1, out
    rows = {line.split()[0] + " " + line.split()[1]: line for line in out.splitlines() if "vs differences" in line and "projections" in line}
    assert rows["hvp x"].rstrip().endswith("FAIL") and rows["hvp s"].rstrip().endswith("ok")
    assert "hvp x vs differences: wrong at [" in out
    code, out = run(f"{GELU}:GeluDetached", f"{GELU}:reference", "--dtype", "float64", "--ref-dtype", "float32", "--double-backward")
    assert code == 2 and "needs --ref-dtype float64" in out


def test_double_backward_not_supported_is_reported_not_passed(tmp_path):
    code, out = run(f"{GELU}:GeluOnce", f"{GELU}:reference", "--double-backward", "--examples", 4, "--format", "json")
    assert code == 4, out  # incomplete: what the candidate cannot do was not checked, so it is not a pass
    doc = json.loads(out)
    assert doc["complete"] is False and doc["passed"] is False
    assert "once_differentiable" in doc["not_supported"]["hvp x"]
    assert [w["passed"] for w in doc["worst"] if w["name"] == "hvp x"] == [None]
    code, out = run(f"{SC}:GatherRowsSorted", f"{SC}:reference", "--double-backward", "--dtype", "float32", "--examples", 4)
    assert code == 0 and "hvp table" in out and "not supported" not in out, out  # linear: both second derivatives are zero
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--double-backward", "--examples", 6)
    assert code == 4, out  # hvp x: its backward uses xhat and rstd saved from forward, constants to autograd
    assert "double backward not supported: hvp x: its gradients do not depend on x" in out
    assert out.strip().splitlines()[-1].startswith("INCOMPLETE: what was checked passes; not checked: double backward not supported by the candidate (hvp x)")
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--double-backward", "--examples", 6, "--allow-unchecked")
    assert code == 0, out


def test_forward_ad_jvp_checked():
    code, out = run(f"{GELU}:FusedGelu", f"{GELU}:reference", "--forward-ad", "--examples", 8, "--dtype", "float16")
    assert code == 0 and "jvp output" in out, out
    code, out = run(f"{GELU}:GeluWrongJvp", f"{GELU}:reference", "--forward-ad", "--examples", 8)
    assert code == 1 and "FAIL: jvp output beyond the bound" in out, out
    assert "--forward-ad" in out.split("reproduce:")[1]
    code, out = run(f"{LN}:FusedLayerNorm", f"{LN}:reference", "--forward-ad", "--examples", 3)
    assert code == 4 and "forward AD not supported: jvp: the Function defines no jvp staticmethod" in out, out


@pytest.mark.cuda
@needs_cuda
def test_cuda_double_backward_forward_ad_and_determinism():
    code, out = run(f"{SECOND}:ScaledTanh", f"{SECOND}:reference", "--device", "cuda", "--double-backward", "--examples", 6)
    assert code == 0, out
    code, out = run(f"{SECOND}:ScaledTanhXDetached", f"{SECOND}:reference", "--device", "cuda", "--double-backward", "--dtype", "float64", "--examples", 6)
    assert code == 1 and "hvp x vs differences" in out, out
    code, out = run(f"{GELU}:GeluWrongJvp", f"{GELU}:reference", "--device", "cuda", "--forward-ad", "--examples", 6)
    assert code == 1 and "jvp output" in out, out
    code, out = run(f"{SC}:GatherRowsSorted", f"{SC}:reference", "--device", "cuda", "--dtype", "float32", "--examples", 3, "--determinism", 5)
    assert code == 0, out


FLIP = '''
import torch

calls = [0]


class Flip(torch.autograd.Function):
    """Right on every call but the second: a kernel whose result depends on the run, not the input."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        calls[0] += 1
        return g * (3 if calls[0] == 2 else 2)


def reference(x):
    return x * 2
'''


def test_a_flaky_candidate_is_named_in_the_users_terms(tmp_path):
    """No Hypothesis internals; the failing case to replay; --determinism suggested only when it was not given."""
    for determinism in ([], ["--determinism", 2]):
        path = tmp_path / f"flip{len(determinism)}.py"  # a fresh module: its call counter starts at 0
        path.write_text(FLIP)
        code, out = run(f"{path}:Flip", f"{path}:reference", "--shapes", "x=4", "--dtype", "float32", "--examples", 5, *determinism)
        line = next(x for x in out.splitlines() if x.startswith("FAIL: "))
        assert code == 1 and "probe(" not in out and "Hypothesis" not in out, out
        assert "failed the case --case 'x=" in line and "differ from run to run" in line
        assert ("--determinism 20" in line) is (not determinism), line
