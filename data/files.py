"""Readers of the plain annotation files every backbone's datasets start from: text, json, csv.

Each returns Python values and raises :class:`~data.errors.MissingDataFileError` /
:class:`~data.errors.DataFormatError` naming the file, so a bad annotation file fails before training with
the path in the message rather than as a bare parser error.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from typing import Any

from data.errors import DataFormatError, MissingDataFileError

__all__ = ["read_text", "read_json", "read_csv_rows"]


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """The text of an annotation file, decoded as ``encoding`` (``utf-8-sig`` drops a byte-order mark).

    Raises:
        MissingDataFileError: The file does not exist.
        DataFormatError: The bytes are not ``encoding`` (e.g. a binary file given as a csv), naming the file and
            the byte offset of the first bad byte.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise MissingDataFileError(source, "file not found")
    with open(source, "rb") as f:
        raw = f.read()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        shown = raw[exc.start:exc.start + 8]
        raise DataFormatError(source, f"not a {encoding} text file: undecodable byte(s) {shown!r} at byte offset "
                                      f"{exc.start} ({exc.reason}); is it a binary file?") from None


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parses a json file.

    Raises:
        MissingDataFileError: The file does not exist.
        DataFormatError: The file is not valid UTF-8 json (the parser's message is kept).
    """
    source = os.fspath(path)
    text = read_text(source, "utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(source, f"not valid json ({exc})") from exc


def read_csv_rows(path: str | os.PathLike[str], required: Sequence[str]) -> list[dict[str, str]]:
    """Read a comma-separated file with a header row.

    Args:
        path: The csv file.
        required: Columns that must be present.

    Returns:
        One dict per row, header → value, surrounding whitespace stripped.

    Raises:
        MissingDataFileError: The file does not exist.
        DataFormatError: A required column is missing, or the file has no rows.
    """
    source = os.fspath(path)
    # utf-8-sig: a csv saved by a spreadsheet starts with a byte-order mark that would rename column 1.
    text = read_text(source, "utf-8-sig")
    try:
        if "\0" in text:  # csv would raise its own bare "line contains NUL"
            raise csv.Error(f"NUL byte at character {text.index(chr(0))}; is it a binary file?")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(source, f"missing csv column(s) {missing}; header is {header}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except csv.Error as exc:
        raise DataFormatError(source, f"not a valid csv ({exc})") from None
    if not rows:
        raise DataFormatError(source, "csv has a header but no rows")
    return rows
