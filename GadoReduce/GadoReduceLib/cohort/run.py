"""``gadoreduce predict --cases DIR`` or ``--table FILE``: every case of a cohort through the one pipeline (the
model loaded once), each into ``OUTPUT/<case>/`` with the layout of a single ``predict``; finished cases skipped
with ``--resume``; a failing case recorded with its error while the others run; a summary table at the end.

Exit status: 0 when every case is done, 1 when a case failed (the summary names it and why), 2 when the cohort
itself cannot run (raised as ValueError before any case)."""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

from .cases import CohortCase, cases_from_folder, cases_from_table

SUMMARY_CSV, SUMMARY_MD, CONTACT_SHEET = "cohort_summary.csv", "cohort_summary.md", "cohort_contact_sheet.png"
SUMMARY_COLUMNS = ("case", "status", "seconds", "n_regions", "warnings", "error", "output")


def cohort_cases(args) -> list[CohortCase]:
    """The cases named by ``--cases`` or ``--table``, with the command line's acquisition values filled in."""
    if args.cases and args.table:
        raise ValueError("give either --cases DIR or --table FILE, not both")
    given = [option for option, value in (("--pre", args.pre), ("--low", args.low)) if value]
    if given:
        raise ValueError(f"{' and '.join(given)} name one case; a cohort (--cases / --table) names its own inputs")
    cases = cases_from_folder(args.cases) if args.cases else cases_from_table(args.table)
    return [case.resolved(args.dose, args.field_strength, args.agent) for case in cases]


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds the outputs of a finished run (its record is written last)."""
    from ..pipeline import RECORD_FILE
    return (folder / RECORD_FILE).is_file()


def failure_message(error: BaseException) -> str:
    """One line for the summary (the CLI's wording)."""
    from ..io.atomic import user_message
    if isinstance(error, RuntimeError):
        first = next((line.strip() for line in str(error).splitlines() if "ERROR" in line), str(error).strip())
        return f"the computation failed ({first[:300]}); check that the inputs are whole 3D T1w brain scans"
    if isinstance(error, MemoryError):
        return "out of memory; give --memory-limit GB or close other programs"
    return user_message(error)


def _case_arguments(args, case: CohortCase, output: Path) -> argparse.Namespace:
    values = dict(vars(args), pre=str(case.pre), low=str(case.low), dose=case.dose,
                  field_strength=case.field_strength, agent=case.agent, sources=dict(case.sources),
                  output=str(output), cases=None, table=None)
    return argparse.Namespace(**values)


def _row(case: str, status: str, output: Path, record: dict | None = None, seconds: float | None = None,
         error: str = "") -> dict:
    record = record or {}
    return {"case": case, "status": status, "seconds": "" if seconds is None else round(seconds, 1),
            "n_regions": record.get("n_regions", ""), "warnings": "; ".join(record.get("warnings", [])),
            "error": error, "output": str(output)}


def write_summary(output: Path, rows: list[dict]) -> tuple[Path, Path, Path]:
    """``cohort_summary.csv``, ``cohort_summary.md`` (one row per case) and ``cohort_contact_sheet.png`` (every
    case's montage, a failed case's error) in ``output``, atomically."""
    from ..io.atomic import write_text
    from ..io.preview import contact_sheet
    from .. import DISCLAIMER
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    done = sum(r["status"] != "failed" for r in rows)
    lines = [f"# GadoReduce cohort: {done} of {len(rows)} cases done", "",
             "Research software, not for diagnosis.", "",
             "| " + " | ".join(SUMMARY_COLUMNS[:-1]) + " |", "|" + "---|" * (len(SUMMARY_COLUMNS) - 1)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]).replace("|", "/") for c in SUMMARY_COLUMNS[:-1]) + " |")
    sheet = contact_sheet([(f"{r['case']}: {r['status']}" + (f" ({r['error']})" if r["error"] else ""),
                            Path(r["output"]) / "prediction.png" if r["status"] != "failed" else None)
                           for r in rows], output / CONTACT_SHEET, footer=DISCLAIMER)
    return (write_text(output / SUMMARY_CSV, buffer.getvalue()),
            write_text(output / SUMMARY_MD, "\n".join(lines) + "\n"), sheet)


def predict_cohort(args, log=None) -> int:
    """Run the cohort of ``args`` (``gadoreduce predict`` options with ``--cases`` or ``--table``); see the module
    docstring. ``log(line)``: progress lines (default: standard error)."""
    import json

    from ..io.profiling import record as profile
    from ..pipeline import RECORD_FILE, check_predict_arguments, pipeline_from_arguments, predict_from_arguments
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    cases = cohort_cases(args)
    output = Path(args.output)
    done_earlier = [case.name for case in cases if is_complete(output / case.name)]
    if done_earlier and not (args.resume or args.overwrite):
        raise ValueError(f"--output {output} already holds the results of {len(done_earlier)} of these cases "
                         f"({', '.join(done_earlier[:3])}{', ...' if len(done_earlier) > 3 else ''}): add --resume "
                         "to skip them, or --overwrite to compute them again")
    runnable = next((c for c in cases if c.error is None and not (args.resume and c.name in done_earlier)), None)
    if runnable is not None:  # the options every case shares (device, model, tiles, ...) are checked once, first
        check_predict_arguments(_case_arguments(args, runnable, output / runnable.name))
    pipeline, rows, failed = None, [], 0
    for number, case in enumerate(cases, start=1):
        folder = output / case.name
        prefix = f"[case {number}/{len(cases)}] {case.name}"
        if case.error is None and args.resume and folder.name in done_earlier:
            record = json.loads((folder / RECORD_FILE).read_text())
            rows.append(_row(case.name, "done earlier", folder, record))
            log(f"{prefix}: done earlier, skipped (--resume)")
            continue
        if case.error is not None:
            rows.append(_row(case.name, "failed", folder, error=case.error))
            failed += 1
            log(f"{prefix}: FAILED: {case.error}")
            continue
        case_args = _case_arguments(args, case, folder)
        case_args.progress = lambda percent, message, p=prefix: log(f"{p} [{percent:3.0f} %] {message}")
        start = time.monotonic()
        try:
            if pipeline is None:
                log(f"loading the model for {len(cases)} cases")
                pipeline = pipeline_from_arguments(case_args)
            with profile() as stages, stages.stage("total"):
                _, result, _ = predict_from_arguments(case_args, pipeline)
        except (ValueError, OSError, RuntimeError, MemoryError) as error:
            message = failure_message(error)
            rows.append(_row(case.name, "failed", folder, seconds=time.monotonic() - start, error=message))
            failed += 1
            log(f"{prefix}: FAILED: {message}")
            continue
        rows.append(_row(case.name, "done", folder, result.record, time.monotonic() - start))
        log(f"{prefix}: done in {time.monotonic() - start:.1f} s, {result.record['n_regions']} enhancing regions")
    csv_path, md_path, sheet = write_summary(output, rows)
    log(f"{len(cases) - failed} of {len(cases)} cases done, {failed} failed; summary in {csv_path}, "
        f"{md_path.name} and {sheet.name}")
    return 1 if failed else 0
