"""The diagnosis names the wrong op: planted bugs in each position of a network, then each output leads with it.

The planted ops are in tests/diagnosis_targets/planted.py; specs are written to tmp_path.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

import gradlab
from gradlab import runner
from gradlab.cli import main
from gradlab.diagnosis import diagnose
from gradlab.environment import environment
from gradlab.report import html, json_rows, junit, markdown
from gradlab.report.failure import failure_text
from gradlab.report.rows import verdict

OPS = Path(__file__).parent / "diagnosis_targets" / "planted.py"
OP = "planted.py:"


def _spec(tmp_path: Path, name: str, acts: list[str], loss: str = "{fn: sse}") -> Path:
    """dense, act, dense, act, ... dense: act i sits at network.layers[2 i + 1]; `builtin:tanh` or a planted class."""
    layers = []
    for a in acts:
        layers.append("    - {type: dense, units: 5}")
        if a.startswith("builtin:"):
            layers.append("    - {type: activation, fn: %s}" % a.split(":")[1])
        else:
            layers.append('    - {type: activation, fn: custom, impl: "%s:%s"}' % (OPS, a))
    layers.append("    - {type: dense, units: 3}")
    text = (f"name: {name}\nseed: 0\ninput: {{dim: 4, batch: 6}}\ntarget: {{kind: regression}}\n"
            "check: {devices: [cpu]}\nnetwork:\n  layers:\n" + "\n".join(layers) + f"\nloss: {loss}\n")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _check(tmp_path, name, acts, loss="{fn: sse}"):
    return runner.check_file(_spec(tmp_path, name, acts, loss))


CASES = {
    # name: (activations, loss, suspect, layer, path, op, kind)
    "first": (["SwishWrongBeta", "builtin:tanh", "builtin:sigmoid", "Swish"], None, "backward", 1, "network.layers[1]", "SwishWrongBeta", "wrong backward"),
    "middle": (["builtin:tanh", "SwishWrongBeta", "builtin:sigmoid", "Swish"], None, "backward", 3, "network.layers[3]", "SwishWrongBeta", "wrong backward"),
    "last": (["builtin:tanh", "builtin:sigmoid", "Swish", "SwishWrongBeta"], None, "backward", 7, "network.layers[7]", "SwishWrongBeta", "wrong backward"),
    "mirror": (["builtin:tanh", "SwishWrongMirror", "builtin:sigmoid", "builtin:tanh"], None, "torch mirror", 3, "network.layers[3]", "SwishWrongMirror", "wrong torch mirror"),
    "forward": (["builtin:tanh", "SwishWrongForward", "builtin:sigmoid", "Swish"], None, "forward", 3, "network.layers[3]", "SwishWrongForward", "suspect forward"),
    "sign": (["builtin:tanh", "SwishNegated", "builtin:sigmoid", "Swish"], None, "backward", 3, "network.layers[3]", "SwishNegated", "sign error"),
    "factor": (["builtin:tanh", "SwishDoubled", "builtin:sigmoid", "Swish"], None, "backward", 3, "network.layers[3]", "SwishDoubled", "off by a factor of 2.0"),
    "few": (["builtin:tanh", "SwishClipped", "builtin:sigmoid", "Swish"], None, "backward", 3, "network.layers[3]", "SwishClipped", "confined to few elements"),
    "loss": (["builtin:tanh", "Swish"], '{fn: custom, impl: "%s:HuberNoClip"}' % OPS, "backward", None, "loss", "HuberNoClip", "wrong backward"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_planted_bug_is_located(tmp_path, case):
    acts, loss, suspect, layer, path, op, kind = CASES[case]
    result = _check(tmp_path, case, acts, loss or "{fn: sse}")
    assert not result.passed
    first = result.diagnosis[0]
    assert (first.suspect, first.layer, first.path, first.op, first.kind) == (suspect, layer, path, OP + op, kind), first
    assert first.evidence and first.evidence.endswith(".")


def test_few_elements_are_named(tmp_path):
    result = _check(tmp_path, "few", CASES["few"][0])
    evidence = result.diagnosis[0].evidence
    assert "layers.2.weight 5 of 25" in evidence and "all in row 1" in evidence and "layers.2.bias 1 of 5 ((1))" in evidence


def test_a_correct_network_has_no_diagnosis(tmp_path):
    result = _check(tmp_path, "ok", ["builtin:tanh", "Swish", "builtin:sigmoid", "Swish"])
    assert result.passed and result.diagnosis == [] and diagnose(result) == []
    assert "suspect" not in verdict([result])


def test_without_autograd_the_backward_is_suspected_with_no_referee(tmp_path):
    path = _spec(tmp_path, "two", ["builtin:tanh", "SwishWrongBeta"])
    result = runner.check_file(path, engines=["analytic", "numeric"])
    first = result.diagnosis[0]
    assert (first.suspect, first.path) == ("backward", "network.layers[3]")
    assert "no third engine" in first.evidence


# ---- each output leads with the diagnosis -------------------------------------------------------

HEADLINE = "backward of network.layers[3] (planted.py:SwishWrongBeta)"


@pytest.fixture(scope="module")
def middle(tmp_path_factory):
    return _check(tmp_path_factory.mktemp("middle"), "middle", CASES["middle"][0])


def test_verdict_line_names_the_suspect(middle):
    line = verdict([middle])
    assert line.startswith("FAIL: 1 of 1 spec(s) have gradient discrepancies (middle); suspect: " + HEADLINE + ";")
    assert "\n" not in line


def test_json_carries_the_diagnosis(middle, tmp_path):
    doc = json.loads(json_rows.render([middle], {}))
    d = doc["specs"][0]["diagnosis"][0]
    assert list(d)[:3] == ["suspect", "layer", "op"] and d["path"] == "network.layers[3]" and d["kind"] == "wrong backward"
    assert "suspect: " + HEADLINE in doc["verdict"]
    out = tmp_path / "r.json"
    CliRunner().invoke(main, ["check", str(_spec(tmp_path, "middle", CASES["middle"][0])), "--format", "json", "--output", str(out)])
    spec = json.loads(out.read_text())["specs"][0]
    assert spec["diagnosis"][0]["layer"] == 3 and spec["diagnosis"][0]["suspect"] == "backward"


def test_markdown_top_has_the_diagnosis(middle):
    text = markdown.render([middle], {})
    top = text.split("\n")
    assert top[0].startswith("## ❌ gradlab FAIL") and "suspect:" in top[0]
    assert top[2].startswith("- **Diagnosis: backward of `network.layers[3]`") or top[2].startswith("- **Diagnosis: backward of network.layers")
    assert text.index("Diagnosis") < text.index("layers.2.weight")


def test_html_has_a_diagnosis_box_after_the_verdict(middle, monkeypatch):
    monkeypatch.setattr(html, "heatmap_png", lambda *a, **k: "")  # the pictures are not what this test reads
    page = html.render([middle], environment([middle]))
    verdict_at = page.index('<div class="verdict')
    box = page.index('<div class="diagnosis"')
    assert verdict_at < box < page.index("<h3>Summary</h3>")
    assert "planted.py:SwishWrongBeta" in page[box:box + 2000]


def test_junit_failure_message_starts_with_the_suspect(middle):
    root = ET.fromstring(junit.render([middle], {}))
    failures = root.findall(".//failure")
    assert failures and all(f.get("message").startswith("suspect: " + HEADLINE + "; ") for f in failures)


def test_assert_gradients_message_names_the_suspect_first(tmp_path):
    path = _spec(tmp_path, "middle", CASES["middle"][0])
    with pytest.raises(AssertionError) as info:
        gradlab.assert_gradients(str(path))
    lines = str(info.value).splitlines()
    assert lines[1].startswith("  suspect: " + HEADLINE)
    assert failure_text(runner.check_file(path)).splitlines()[1] == lines[1]
