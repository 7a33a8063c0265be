"""The export document and how it travels as sealed records: pure functions, no I/O.

An export is personal data, so it is sealed for the recipient like any record: it becomes
records of the category ``rights.export`` on the data topic of its subject (the device's
pseudonym, or the hub's pseudonym for ``scope: all``), sealed under the current epoch. It is
not a consent category: nothing collected from a device is in it, and it exists only because
the data subject asked. The records are not published on the data stream; they are returned
in the ``export`` response, whose requester hands them to the consumer, which opens each with
``Consumer.open(record["topic"], base64(record["envelope"]))`` and joins them with
``read_export``.

Record fields: ``format`` ("consentgate-export/1"), ``export`` (id, 16 hex digits), ``part``
(0-based), ``parts``, ``json`` (a slice of the ASCII JSON text of the document).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from gateway.model import Value

EXPORT_CATEGORY: Final = "rights.export"
EXPORT_FORMAT: Final = "consentgate-export/1"
# A slice leaves room under the envelope's plaintext limit for the CBOR framing and fields.
PART_CHARS: Final = 60_000


def document_text(document: Mapping[str, Any]) -> str:
    """Return the document as compact ASCII JSON (one byte per character, so slices are exact)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def split_document(export_id: str, text: str) -> list[dict[str, Value]]:
    """Return the record fields that carry ``text`` in order (at least one part)."""
    slices = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
    return [
        {
            "format": EXPORT_FORMAT,
            "export": export_id,
            "part": index,
            "parts": len(slices),
            "json": piece,
        }
        for index, piece in enumerate(slices)
    ]


class ExportError(ValueError):
    """Opened records do not make up one whole export."""


def read_export(parts: Iterable[Mapping[str, Value]]) -> dict[str, Any]:
    """Return the document carried by the opened records' ``fields`` (any order); ExportError."""
    by_index: dict[int, str] = {}
    ids: set[object] = set()
    total: object = None
    for fields in parts:
        if fields.get("format") != EXPORT_FORMAT:
            raise ExportError(f"a record is not of format {EXPORT_FORMAT}")
        ids.add(fields.get("export"))
        total = fields.get("parts")
        index, piece = fields.get("part"), fields.get("json")
        if not isinstance(index, int) or not isinstance(piece, str):
            raise ExportError("a record has no part number or JSON slice")
        by_index[index] = piece
    if len(ids) != 1 or not isinstance(total, int) or sorted(by_index) != list(range(total)):
        raise ExportError("the records are not all the parts of one export")
    try:
        document = json.loads("".join(by_index[i] for i in range(total)))
    except json.JSONDecodeError as exc:
        raise ExportError(f"the joined export is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ExportError("the joined export is not a JSON object")
    return document
