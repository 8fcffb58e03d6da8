"""``gadoreduce predict --cases DIR`` or ``--table FILE``: every case of a cohort through the one pipeline (the
model loaded once), each into ``OUTPUT/<case>/`` with the layout of a single ``predict``; finished cases skipped
with ``--resume``; a failing case recorded with its error while the others run; a summary table at the end.

Exit status: 0 when every case is done, 1 when a case failed (the summary names it and why), 2 when the cohort
itself cannot run (raised as ValueError before any case)."""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path

from .cases import CohortCase, cases_from_bids, cases_from_folder, cases_from_table, is_bids

SUMMARY_CSV, SUMMARY_MD, CONTACT_SHEET = "cohort_summary.csv", "cohort_summary.md", "cohort_contact_sheet.png"
SUMMARY_COLUMNS = ("case", "status", "seconds", "n_regions", "warnings", "error", "output")


def cohort_cases(args) -> list[CohortCase]:
    """The cases named by ``--cases`` (case folders, or a BIDS dataset) or ``--table``, with the command line's
    acquisition values filled in."""
    if args.cases and args.table:
        raise ValueError("give either --cases DIR or --table FILE, not both")
    given = [option for option, value in (("--pre", args.pre), ("--low", args.low)) if value]
    if given:
        raise ValueError(f"{' and '.join(given)} name one case; a cohort (--cases / --table) names its own inputs")
    if args.cases and is_bids(args.cases):
        cases = cases_from_bids(args.cases, getattr(args, "bids_low_ce", None))
    else:
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


class Progress:
    """Progress of a serial cohort on standard error: on a terminal one line rewritten in place (the whole cohort's
    percentage, the case, its step), each finished case on a line of its own; otherwise plain log lines."""

    def __init__(self, total: int, stream=None):
        self.total, self.stream = max(total, 1), stream or sys.stderr
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.number, self.name = 0, ""

    def start(self, number: int, name: str) -> None:
        self.number, self.name = number, name
        if not self.terminal:
            self.log(f"[case {number}/{self.total}] {name}")

    def step(self, percent: float, message: str) -> None:
        if not self.terminal:
            self.log(f"{self.name} [{percent:3.0f} %] {message}")
            return
        overall = 100.0 * (self.number - 1 + percent / 100.0) / self.total
        self.stream.write(f"\r\033[K[cohort {overall:3.0f} %] case {self.number}/{self.total} {self.name}: "
                          f"{message[:60]}")
        self.stream.flush()

    def log(self, line: str) -> None:
        self.stream.write(("\r\033[K" if self.terminal else "") + line + "\n")
        self.stream.flush()


def run_case(case: CohortCase, args, pipeline_for, log, step=None) -> dict:
    """One case of the cohort into ``args.output``/<case> (``args``: the cohort's options); ``pipeline_for(args)``
    gives the loaded pipeline; ``step(percent, message)`` gets its progress (default: log lines). Returns its
    summary row; a failure is caught and becomes a "failed" row."""
    from ..io.profiling import record as profile
    from ..pipeline import predict_from_arguments
    folder = Path(args.output) / case.name
    if case.error is not None:
        log(f"{case.name}: FAILED: {case.error}")
        return _row(case.name, "failed", folder, error=case.error)
    case_args = _case_arguments(args, case, folder)
    case_args.progress = step or (lambda percent, message: log(f"{case.name} [{percent:3.0f} %] {message}"))
    start = time.monotonic()
    try:
        pipeline = pipeline_for(case_args)
        with profile() as stages, stages.stage("total"):
            _, result, _ = predict_from_arguments(case_args, pipeline)
    except (ValueError, OSError, RuntimeError, MemoryError) as error:
        message = failure_message(error)
        log(f"{case.name}: FAILED: {message}")
        return _row(case.name, "failed", folder, seconds=time.monotonic() - start, error=message)
    log(f"{case.name}: done in {time.monotonic() - start:.1f} s, {result.record['n_regions']} enhancing regions")
    return _row(case.name, "done", folder, result.record, time.monotonic() - start)


def _options(args) -> dict:
    """The cohort's options as plain values (what a task sends to a worker)."""
    return {k: v for k, v in vars(args).items() if k not in ("func", "progress") and not callable(v)}


_PIPELINES: dict = {}
"""The pipelines a Dask worker process has loaded, by their options."""


def _worker_pipeline(args):
    """The pipeline of this worker process for these options (loaded at its first case)."""
    from ..pipeline import pipeline_from_arguments
    key = tuple(str(getattr(args, k, None)) for k in ("model", "device", "tile", "precision", "memory_limit",
                                                      "backend", "threads", "threshold_sigmas", "min_volume", "tta",
                                                      "uncertainty"))
    if key not in _PIPELINES:
        _PIPELINES[key] = pipeline_from_arguments(args)
    return _PIPELINES[key]


def case_task(case, options: dict, threads: int | None = None) -> dict:
    """Dask task (``distributed.run_on_dask``): one case in a worker process (:func:`run_case`) with ``threads`` CPU threads for the network and
    elastix; None: all cores of the worker's machine, as a plain process has them (Dask's nanny starts workers with
    OMP_NUM_THREADS=1, which would make the network slower and its sums differ in the last bits from a serial
    run's). Returns its summary row."""
    import torch
    torch.set_num_threads(threads or os.cpu_count() or 1)
    if threads:
        options = dict(options, threads=options.get("threads") or threads)
    return run_case(case, argparse.Namespace(**options), _worker_pipeline,
                    lambda line: print(line, file=sys.stderr, flush=True))


def _serial_pipeline():
    """``pipeline_for`` of a serial run: the model loaded at the first case, kept for the others."""
    from ..pipeline import pipeline_from_arguments
    loaded = []

    def pipeline_for(args):
        if not loaded:
            loaded.append(pipeline_from_arguments(args))
        return loaded[0]
    return pipeline_for


def predict_cohort(args, stream=None) -> int:
    """Run the cohort of ``args`` (``gadoreduce predict`` options with ``--cases`` or ``--table``); see the module
    docstring. Cases run here one after the other, or as tasks on Dask (``--scheduler``, or ``--workers`` of 2 or
    more: ``cohort.distributed``). Progress goes to ``stream`` (default: standard error; see :class:`Progress`)."""
    import json

    from ..pipeline import RECORD_FILE, output_files
    from ..validation.commands import check_predict_arguments
    from .distributed import resolve_workers, run_on_dask
    progress = Progress(0, stream)
    log = progress.log
    cases = cohort_cases(args)
    output = Path(args.output)
    workers = resolve_workers(getattr(args, "workers", "1"), len([c for c in cases if c.error is None]))
    done_earlier = [case.name for case in cases if is_complete(output / case.name)]
    if done_earlier and not (args.resume or args.overwrite):
        raise ValueError(f"--output {output} already holds the results of {len(done_earlier)} of these cases "
                         f"({', '.join(done_earlier[:3])}{', ...' if len(done_earlier) > 3 else ''}): add --resume "
                         "to skip them, or --overwrite to compute them again")
    skipped = {c.name for c in cases if c.error is None and args.resume and c.name in done_earlier}
    todo = [c for c in cases if c.name not in skipped]
    runnable = next((c for c in todo if c.error is None), None)
    if runnable is not None:  # the options every case shares (device, model, tiles, ...) are checked once, first
        check_predict_arguments(_case_arguments(args, runnable, output / runnable.name),
                                output_files(output / runnable.name))
    rows = {}
    for name in (c.name for c in cases if c.name in skipped):
        rows[name] = _row(name, "done earlier", output / name, json.loads((output / name / RECORD_FILE).read_text()))
        log(f"{name}: done earlier, skipped (--resume)")
    workers = min(workers, max(1, len([c for c in todo if c.error is None])))
    if getattr(args, "scheduler", None) or workers > 1:
        rows.update(run_on_dask(todo, case_task, _options(args), log, scheduler=getattr(args, "scheduler", None),
                                workers=workers))
    else:
        pipeline_for = _serial_pipeline()
        progress.total = max(len(todo), 1)
        for number, case in enumerate(todo, start=1):
            progress.start(number, case.name)
            rows[case.name] = run_case(case, args, pipeline_for, log, progress.step)
    ordered = [rows[case.name] for case in cases]
    failed = sum(row["status"] == "failed" for row in ordered)
    csv_path, md_path, sheet = write_summary(output, ordered)
    log(f"{len(cases) - failed} of {len(cases)} cases done, {failed} failed; summary in {csv_path}, "
        f"{md_path.name} and {sheet.name}")
    return 1 if failed else 0
