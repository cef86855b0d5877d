"""`gradlab compare CANDIDATE REFERENCE`: a fast kernel against a reference in float16/bfloat16/float32."""

from __future__ import annotations

import json
import sys

import click

from ..batch import TARGET_CODE_HELP, safety_options, timeout_option_for

EXAMPLES = """
\b
Examples:
  gradlab compare examples/kernels/layernorm.py:FusedLayerNorm examples/kernels/layernorm.py:reference
  gradlab compare my_kernels.py:FlashAttn my_kernels.py:attention_ref --dtype float16 --examples 300
  gradlab compare mypkg.layers:FusedMLP mypkg.layers:MLP --init '{"width": 64}' --shapes 'x=8,64'
  gradlab compare examples/kernels/scatter.py:GatherRows examples/kernels/scatter.py:reference --dtype float32 --determinism 20
  gradlab compare examples/kernels/gelu.py:FusedGelu examples/kernels/gelu.py:reference --double-backward --forward-ad
  gradlab compare examples/kernels/gelu.py:FusedGelu examples/kernels/gelu.py:reference --dtype float64 --double-backward
"""


@click.command("compare", epilog=EXAMPLES, short_help="Judge a fast low-precision kernel against its reference.")
@click.argument("candidate")
@click.argument("reference")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32", "float64"]), default="bfloat16", show_default=True,
              help="The low dtype the candidate runs in (float64: for --double-backward's differences; the noise is then gradlab's float64 atol + rtol * max|ref|).")
@click.option("--ref-dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True, help="The high-precision reference's dtype (TF32 off).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where all three runs happen.")
@click.option("--shapes", help="Input shapes, e.g. 'x=8,64;w=64;labels=8:int<10' (default: the candidate's example_inputs()).")
@click.option("--init", "init", help="JSON keyword arguments for an nn.Module candidate's (and reference's) constructor.")
@click.option("--examples", type=click.IntRange(min=1), default=100, show_default=True, help="Hypothesis budget: cases tried before declaring a pass.")
@click.option("--factor", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True, help="How many times the low-dtype reference's error the candidate may have.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the search; the same seed gives the same cases.")
@click.option("--determinism", type=click.IntRange(min=2), metavar="N", help="Also run the candidate's backward N times on one input and demand equal results.")
@click.option("--nondet-tol", type=click.FloatRange(min=0), help="With --determinism: the largest spread accepted (default: bitwise equality).")
@click.option("--double-backward", "double_backward", is_flag=True, help="Also judge Hessian-vector products d<grad, v>/d(input, parameter); in float64 also against differences of the first-order gradient.")
@click.option("--forward-ad", "forward_ad", is_flag=True, help="Also judge forward-mode JVPs (a Function needs a jvp staticmethod).")
@click.option("--case", "case", help="Replay one case from a report's reproduce line (SHAPES|values=STYLE|seed=N), no search.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the output to this file instead of stdout.")
@timeout_option_for("Give up after this many seconds in all (a candidate or reference that hangs is reported as a timeout, exit 2).")
@safety_options(no_code_help=TARGET_CODE_HELP.replace("TARGET", "CANDIDATE and REFERENCE"))
def command(candidate, reference, dtype, ref_dtype, device, shapes, init, examples, factor, seed, determinism, nondet_tol, double_backward, forward_ad,
            case, fmt, output, timeout):
    """Compare CANDIDATE (a fast kernel) with REFERENCE by the FlashAttention rule.

    Each is path/to/file.py:Name or package.module:Name: a torch.autograd.Function, an nn.Module
    class, or a function of tensors. Per case: inputs drawn in --dtype; the reference run in
    --ref-dtype and in --dtype, the candidate in --dtype, all against one random cotangent. Every
    output and gradient passes when max|cand - ref| <= factor * max|ref_low - ref| + noise (noise: 2x
    the low dtype's rounding at the tensor's scale). Hypothesis varies sizes and values and shrinks a
    failure. --double-backward and --forward-ad judge second-order products and JVPs the same
    way (what the candidate cannot do is reported as not supported). Exit code 0: every example passes; 1: a counterexample or nondeterminism; 2: bad usage,
    a target that cannot be loaded, or user code that raised; 130: Ctrl-C.
    """
    from ..batch import EXIT_FAIL, incomplete_code
    from ..errors import GradlabError
    from ..kernels import determinism as D
    from ..kernels import inputs as I
    from ..kernels import report
    from ..kernels.execute import DTYPES, Config, Pair
    from ..kernels.search import replay, search
    from ..kernels.targets import load, share_parameters
    from ..output import check_writable, write_report_text, write_text
    from ..userops.loading import load_raw
    from ..usercode import deadline

    import torch

    if output:
        check_writable(output)
    if dtype == "float64" and ref_dtype != "float64":
        raise GradlabError("--dtype float64 needs --ref-dtype float64 (the reference must be at least as precise as the candidate)")
    if nondet_tol is not None and determinism is None:
        raise GradlabError("--nondet-tol needs --determinism N")
    if device == "cuda" and not torch.cuda.is_available():
        raise GradlabError("--device cuda: no CUDA device is available here (torch.cuda.is_available() is False)")
    init_kwargs = None
    if init is not None:
        try:
            init_kwargs = json.loads(init)
        except json.JSONDecodeError as exc:
            raise GradlabError(f"--init: not valid JSON ({exc.msg} at column {exc.colno}): {init!r}") from None
        if not isinstance(init_kwargs, dict):
            raise GradlabError(f"--init: expected a JSON object of keyword arguments, got {init!r}")
    replay_case = I.parse_case(case) if case else None
    specs = I.parse_shapes(shapes) if shapes else None
    with deadline(timeout, f"gradlab compare {candidate}"):
        cand = load(candidate, "candidate", init_kwargs)
        ref = load(reference, "reference", init_kwargs)
        share_parameters(cand, ref)
        if replay_case:
            specs = replay_case.specs
        elif specs is None:
            specs = I.declared(load_raw(candidate), candidate)
        pair = Pair(cand, ref, specs, Config(DTYPES[dtype], DTYPES[ref_dtype], device, factor, double_backward, forward_ad))
        result = replay(pair, replay_case) if replay_case else search(pair, examples=examples, seed=seed)
        if result.flaky and not determinism:
            result.flaky += " (rerun with --determinism 20 to measure the spread)"
        spreads, det_case = None, ""
        if determinism:
            det, spreads = D.check(pair, determinism, seed=seed, tol=nondet_tol)
            det_case = det.text()
    extra = (["--device", device] if device != "cpu" else []) + (["--init", init] if init else [])
    extra += (["--double-backward"] if double_backward else []) + (["--forward-ad"] if forward_ad else [])
    outcome = report.Outcome(candidate, reference, dtype, ref_dtype, device, factor, seed, examples, result, spreads, det_case, tuple(extra))
    if fmt == "json":
        write_text(report.to_json(outcome), output)
    else:
        write_report_text(report.text(outcome), output)
    sys.exit(incomplete_code(unchecked=bool(outcome.unsupported), nothing=False) if outcome.passed else EXIT_FAIL)
