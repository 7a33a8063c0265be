"""A disclosure as plain text, Markdown or HTML."""

from __future__ import annotations

import html
import textwrap
from typing import Final

from gateway.disclosure.model import DisclosureInputs
from gateway.disclosure.statements import Disclosure, disclose

FORMATS: Final = ("text", "markdown", "html")


def render(inputs: DisclosureInputs, fmt: str) -> str:
    """Return the disclosure of ``inputs`` in ``fmt`` (one of FORMATS)."""
    doc = disclose(inputs)
    if fmt == "markdown":
        return markdown(doc)
    if fmt == "html":
        return as_html(doc)
    if fmt == "text":
        return text(doc)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def text(doc: Disclosure) -> str:
    """Return ``doc`` as wrapped plain text."""
    out = [doc.title, "=" * len(doc.title), ""]
    for sentence in doc.introduction:
        out += [textwrap.fill(sentence, 78), ""]
    for section in doc.sections:
        out += [section.heading, "-" * len(section.heading)]
        out += [
            textwrap.fill(s, 78, initial_indent="- ", subsequent_indent="  ")
            for s in section.sentences
        ]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def markdown(doc: Disclosure) -> str:
    """Return ``doc`` as Markdown: a title, paragraphs, one heading and list per device."""
    out = [f"# {_md(doc.title)}", ""]
    for sentence in doc.introduction:
        out += [_md(sentence), ""]
    for section in doc.sections:
        out += [f"## {_md(section.heading)}", ""]
        out += [f"- {_md(s)}" for s in section.sentences]
        out.append("")
    return "\n".join(out)


def as_html(doc: Disclosure) -> str:
    """Return ``doc`` as a standalone HTML5 page (every value escaped)."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(doc.title)}</title></head><body>",
        f"<h1>{e(doc.title)}</h1>",
    ]
    out += [f"<p>{e(s)}</p>" for s in doc.introduction]
    for section in doc.sections:
        out.append(f"<h2>{e(section.heading)}</h2><ul>")
        out += [f"<li>{e(s)}</li>" for s in section.sentences]
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md(value: str) -> str:
    for char in ("\\", "*", "_", "`", "[", "]", "<", ">", "#"):
        value = value.replace(char, "\\" + char)
    return value
