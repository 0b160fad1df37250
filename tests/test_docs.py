"""Docs that are generated from the code stay in step with it."""

from pathlib import Path

from domtool.lang.docgen import reference_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_stdlib_reference_is_current():
    """docs/stdlib-reference.md is exactly what `domtool doc` prints (regenerate with
    `.venv/bin/domtool doc > docs/stdlib-reference.md`)."""
    assert (DOCS / "stdlib-reference.md").read_text() == reference_markdown() + "\n"
