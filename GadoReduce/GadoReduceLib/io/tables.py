"""Tables of dict rows as CSV text: the one CSV writer of the region tables and the evaluation report."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

_AXES = ("R", "A", "S")


def _flat(row: dict) -> dict:
    """A row with 3-element ``*_ras`` values as ``_R, _A, _S`` columns and other sequences as ``_0, _1, ...``."""
    out = {}
    for key, value in row.items():
        if isinstance(value, (tuple, list)):
            suffixes = _AXES if key.endswith("_ras") and len(value) == 3 else range(len(value))
            out.update({f"{key}_{s}": v for s, v in zip(suffixes, value)})
        else:
            out[key] = value
    return out


def _full_precision(value) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def csv_text(rows: list[dict], columns: tuple[str, ...] = (), format_value: Callable[[object], str] = _full_precision
             ) -> str:
    """CSV text (LF line ends) of dict rows: ``columns`` first (the header of an empty table), then any other key in
    order of appearance; cells through ``format_value`` (default: floats at full precision, None empty), a key
    missing from a row an empty cell."""
    flat = [_flat(row) for row in rows]
    header = list(columns)
    for row in flat:
        header += [key for key in row if key not in header]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in flat:
        writer.writerow([format_value(row[c]) if c in row else "" for c in header])
    return out.getvalue()
