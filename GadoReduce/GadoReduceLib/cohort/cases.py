"""The cases of a cohort: from a folder of case folders (the layout ``evaluate`` and ``train`` read), a BIDS
dataset (``*_T1w`` images, ``ce-`` entities for contrast) or a CSV/TSV table of paths and acquisition values.

A case whose own description is broken (a missing image, an unreadable case.json, a dose that is no number)
becomes a :class:`CohortCase` with ``error`` set: the cohort reports it and runs the others. A cohort that cannot
be read at all (no cases, a table without its columns, two cases of one name) raises ValueError naming the fix."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..io.cases import (CASE_JSON, PHANTOM_JSON, case_files, case_folders, image_stem, read_case_metadata,
                        safe_name)

TABLE_COLUMNS = ("case", "pre", "low")
TABLE_OPTIONAL = ("dose", "field_strength", "agent")


@dataclass
class CohortCase:
    """One case of a cohort: name (its output folder under --output), the two inputs, the acquisition values
    (None: not known here, the command line's value is used) with their sources, or the ``error`` that keeps it
    from running."""

    name: str
    pre: Path | None = None
    low: Path | None = None
    dose: float | None = None
    field_strength: float | None = None
    agent: str | None = None
    sources: dict = field(default_factory=dict)
    error: str | None = None

    def resolved(self, dose: float | None, field_strength: float | None, agent: str | None) -> "CohortCase":
        """The case with the command line's values where it has none (source "argument"; the agent's default
        "default"); ``error`` set when a dose or field strength is still missing."""
        values, sources = {}, dict(self.sources)
        for name, own, given in (("dose", self.dose, dose), ("field_strength", self.field_strength, field_strength),
                                 ("agent", self.agent, agent)):
            values[name] = own if own is not None else given
            if own is None:
                sources[name] = "argument" if given is not None else "default"
        case = CohortCase(self.name, self.pre, self.low, values["dose"], values["field_strength"], values["agent"],
                          sources, self.error)
        missing = [f"--{n.replace('_', '-')}" for n in ("dose", "field_strength") if values[n] is None]
        if case.error is None and missing:
            case.error = (f"no {' and no '.join(n[2:].replace('-', ' ') for n in missing)} for this case: give "
                          f"{' and '.join(missing)}, or write them into its case.json or table row")
        return case


def _sidecar(folder: Path) -> Path | None:
    return next((folder / n for n in (CASE_JSON, PHANTOM_JSON) if (folder / n).is_file()), None)


def cases_from_folder(root) -> list[CohortCase]:
    """One case per low-dose image of every case folder under ``root`` (named after the folder, plus the low dose's
    name when a folder has several); dose, field strength and agent from case.json or phantom.json."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--cases {root} is not a folder; give a folder of case folders (pre_contrast, low_dose*, "
                         "case.json)")
    folders = case_folders(root)
    if not folders:
        raise ValueError(f"--cases {root} holds no case folder (a folder with pre_contrast and low_dose images)")
    cases = []
    for folder in folders:
        name = safe_name(folder.name)
        try:
            files = case_files(folder, require=("pre_contrast",), purpose="every case needs one")
            if not files["low_dose"]:
                raise ValueError(f"case folder {folder} has no low_dose image (add e.g. low_dose.nii.gz)")
            meta = read_case_metadata(folder)
        except ValueError as error:
            cases.append(CohortCase(name, error=str(error)))
            continue
        sidecar = _sidecar(folder)
        has_agent = sidecar is not None and "agent" in json.loads(sidecar.read_text())
        for low in files["low_dose"]:
            dose = meta.doses.get(low.name)
            sources = {"dose": sidecar.name} if dose is not None else {}
            if sidecar is not None:
                sources["field_strength"] = sidecar.name
            if has_agent:
                sources["agent"] = sidecar.name
            cases.append(CohortCase(
                name if len(files["low_dose"]) == 1 else f"{name}_{safe_name(image_stem(low.name))}",
                files["pre_contrast"], low, dose, meta.field_strength if sidecar is not None else None,
                meta.agent if has_agent else None, sources))
    return _unique(cases, str(root))


BIDS_DESCRIPTION = "dataset_description.json"
BIDS_IMAGE_SUFFIXES = (".nii.gz", ".nii")


def is_bids(root) -> bool:
    """True when ``root`` is a BIDS dataset (it holds ``dataset_description.json``)."""
    return (Path(root) / BIDS_DESCRIPTION).is_file()


def _bids_entities(name: str) -> tuple[dict, str] | None:
    """({entity: label}, suffix) of a BIDS image file name such as ``sub-01_ses-1_ce-low_T1w.nii.gz``."""
    stem = next((name[:-len(s)] for s in BIDS_IMAGE_SUFFIXES if name.endswith(s)), None)
    if stem is None:
        return None
    *pairs, suffix = stem.split("_")
    entities = dict(p.split("-", 1) for p in pairs if "-" in p)
    return (entities, suffix) if "sub" in entities else None


def _bids_field_strength(image: Path) -> float | None:
    sidecar = image.with_name(next(image.name[:-len(s)] for s in BIDS_IMAGE_SUFFIXES if image.name.endswith(s))
                              + ".json")
    try:
        value = json.loads(sidecar.read_text()).get("MagneticFieldStrength") if sidecar.is_file() else None
        return float(value) if value is not None else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def cases_from_bids(root, low_label: str | None = None) -> list[CohortCase]:
    """One case per subject and session (and acq/run) of a BIDS dataset: the ``*_T1w`` image without a ``ce-``
    entity is the pre-contrast scan, the one with ``ce-<low_label>`` (or the only one with a ``ce-`` entity) the
    low dose; the field strength from the low dose's JSON sidecar (MagneticFieldStrength; source "bids").
    ``derivatives/`` and other non-subject folders are not read."""
    root = Path(root)
    groups: dict = {}
    for image in sorted(root.glob("sub-*/**/anat/*_T1w.nii*")):
        parsed = _bids_entities(image.name)
        if parsed is None or parsed[1] != "T1w":
            continue
        entities = parsed[0]
        key = tuple((k, v) for k, v in entities.items() if k != "ce")
        groups.setdefault(key, []).append((entities.get("ce"), image))
    if not groups:
        raise ValueError(f"--cases {root} is a BIDS dataset without sub-*/anat/*_T1w images")
    cases = []
    for key, images in groups.items():
        name = safe_name("_".join(f"{k}-{v}" for k, v in key))
        pre = [image for ce, image in images if ce is None]
        lows = [(ce, image) for ce, image in images if ce is not None and (low_label is None or ce == low_label)]
        labels = sorted(ce for ce, _ in images if ce is not None)
        error = None
        if not pre:
            error = f"{name}: no pre-contrast *_T1w image without a ce- entity"
        elif not lows:
            error = (f"{name}: no *_T1w image with ce-{low_label}" if low_label else
                     f"{name}: no contrast-enhanced *_T1w image (with a ce- entity)") + f"; found ce- labels {labels}"
        elif len(lows) > 1:
            error = f"{name}: several contrast-enhanced images (ce- labels {labels}); choose one with --bids-low-ce"
        if error:
            cases.append(CohortCase(name, error=error))
            continue
        low = lows[0][1]
        field = _bids_field_strength(low)
        cases.append(CohortCase(name, pre[0], low, field_strength=field,
                                sources={"field_strength": "bids"} if field is not None else {}))
    return _unique(cases, str(root))


def _number(row: dict, column: str, line: int, table: Path) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{table} line {line}: {column} {text!r} is not a number") from None


def cases_from_table(path) -> list[CohortCase]:
    """The rows of a CSV or TSV table (columns ``case``, ``pre``, ``low``, optionally ``dose``,
    ``field_strength``, ``agent``; the delimiter from the header line; paths relative to the table's folder)."""
    table = Path(path)
    try:
        text = table.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--table {table} cannot be read ({error}); give a CSV or TSV file") from None
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if "\t" in header else ";" if header.count(";") > header.count(",") else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    columns = [c.strip() for c in (rows[0].keys() if rows else header.split(delimiter))]
    missing = [c for c in TABLE_COLUMNS if c not in columns]
    if missing or not rows:
        raise ValueError(f"--table {table} needs a header line with the columns {', '.join(TABLE_COLUMNS)} (and "
                         f"optionally {', '.join(TABLE_OPTIONAL)}) and one row per case"
                         + (f"; it lacks {', '.join(missing)}" if missing else "; it has no rows"))
    cases = []
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        name = safe_name(row["case"]) or f"line_{line}"
        try:
            paths = {}
            for column in ("pre", "low"):
                if not row[column]:
                    raise ValueError(f"{table} line {line}: no {column} path")
                paths[column] = (table.parent / row[column]).resolve()
                if not paths[column].exists():
                    raise ValueError(f"{table} line {line}: {column} {paths[column]} does not exist")
            values = {c: _number(row, c, line, table) for c in ("dose", "field_strength")}
        except ValueError as error:
            cases.append(CohortCase(name, error=str(error)))
            continue
        agent = row.get("agent") or None
        sources = {n: "table" for n, v in (*values.items(), ("agent", agent)) if v is not None}
        cases.append(CohortCase(name, paths["pre"], paths["low"], values["dose"], values["field_strength"], agent,
                                sources))
    return _unique(cases, str(table))


def _unique(cases: list[CohortCase], where: str) -> list[CohortCase]:
    seen = {}
    for case in cases:
        if case.name in seen:
            raise ValueError(f"{where}: two cases are named {case.name!r} (their outputs would share a folder); "
                             "give every case its own name")
        seen[case.name] = case
    return cases
