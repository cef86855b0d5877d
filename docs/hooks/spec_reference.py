"""MkDocs hook: docs/reference/spec.md's `<!-- spec-reference -->` becomes the reference generated from the
pydantic models (gradlab/docs_reference.py), at every build, so the page cannot drift from the code."""

MARKER = "<!-- spec-reference -->"


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri != "reference/spec.md":
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"docs/reference/spec.md lost its {MARKER} line: the generated reference has nowhere to go")
    from gradlab.docs_reference import generate

    return markdown.replace(MARKER, generate())
