"""MkDocs hook: in docs/reference/spec.md, what lies between `<!-- spec-reference -->` and
`<!-- /spec-reference -->` becomes the reference generated from the pydantic models
(gradlab/docs_reference.py), at every build, so the page cannot drift from the code."""

import re

START, END = "<!-- spec-reference -->", "<!-- /spec-reference -->"


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri != "reference/spec.md":
        return markdown
    if START not in markdown or END not in markdown:
        raise ValueError(f"docs/reference/spec.md lost its {START} ... {END} lines: the generated reference has nowhere to go")
    from gradlab.docs_reference import generate

    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda m: generate(), markdown, count=1, flags=re.S)
