"""The spec reference (docs/reference/spec.md, filled in at build time) is generated from the models: every key is in it."""

import re

from gradlab import docs_reference as ref
from gradlab import spec as S
from gradlab.ops import ACTIVATIONS, LAYERS, LOSSES


def test_generated_reference_names_every_field_and_op():
    page = ref.generate()
    keys = set(re.findall(r"^\| `(?:[\w.]+\.)?(\w+)` \|", page, flags=re.M))
    missing = sorted(ref.all_fields() - {"type"} - keys)
    assert not missing, f"fields missing from the spec reference: {missing}"
    for name in [*ACTIVATIONS.names(), *LOSSES.names(), *(op.name for op in LAYERS), *S.LAYER_TYPES]:
        assert f"`{name}`" in page, name
    # allowed values of literals and defaults come from the models
    assert "`auto`, `central`, `richardson`, `complex_step`" in page and "| `check.mode` | `auto`, `full`, `fast` | `auto` |" in page
    assert "| `stats.seeds` | integer > 0 | `8` |" in page
    assert all(cell.strip() for row in page.splitlines() if row.startswith("| `") for cell in row.split("|")[1:5]), "a row without type, default or meaning"


def test_every_note_names_a_real_field():
    """NOTES holds meanings for fields without a source comment; a renamed field must not leave one behind."""
    models = {m.__name__: m for _, m, _ in ref.SECTIONS} | {m.__name__: m for _, m in ref.layer_models()}
    models |= {op.options.__name__: op.options for op in LAYERS}
    stale = [key for key in ref.NOTES if key.split(".")[1] not in getattr(models.get(key.split(".")[0]), "model_fields", {})]
    assert not stale, stale


def test_a_new_field_reaches_the_page():
    class Extra(S._Model):
        widgets: S.PositiveInt = 3  # how many widgets

    assert "| `x.widgets` | integer > 0 | `3` | how many widgets |" in "\n".join(ref.model_table(Extra, "x."))


def test_the_mkdocs_hook_fills_the_spec_page():
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("spec_reference_hook", root / "docs" / "hooks" / "spec_reference.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = SimpleNamespace(file=SimpleNamespace(src_uri="reference/spec.md"))
    source = (root / "docs" / "reference" / "spec.md").read_text(encoding="utf-8")
    built = hook.on_page_markdown(source, page, None, None)
    assert ref.generate() in built and hook.START not in built and "Reading this file on GitHub" not in built
    other = SimpleNamespace(file=SimpleNamespace(src_uri="index.md"))
    assert hook.on_page_markdown(source, other, None, None) == source
