"""``gadoreduce predict`` over a cohort (issue 17): a folder of case folders and a CSV table, the per-case record
against its JSON schema, a broken case reported while the others finish, and --resume.

Real pipeline on 2 mm phantoms (synthetic data: software checks, not clinical evidence)."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from GadoReduceLib import cli
from GadoReduceLib.cohort.cases import cases_from_folder, cases_from_table
from GadoReduceLib.cohort.record import RECORD_SCHEMA_VERSION, schema
from GadoReduceLib.cohort.run import CONTACT_SHEET, SUMMARY_CSV, SUMMARY_MD

OPTIONS = ["--device", "cpu", "--threshold-sigmas", "12"]


def _digests(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _summary(folder: Path) -> dict:
    with open(folder / SUMMARY_CSV, newline="") as f:
        return {row["case"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two 2 mm phantom case folders (phantom.json: dose from the file name, 3 T, gadobutrol) and one whose low dose
    is a damaged NIfTI file, run once as a folder cohort."""
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom, write_phantom
    root = tmp_path_factory.mktemp("cohort")
    cases = root / "cases"
    for seed in (3, 4):
        write_phantom(generate_phantom(PhantomConfig(seed=seed, doses=(0.25,), size="small", max_motion_deg=3.0,
                                                     max_motion_mm=3.0)), cases / f"phantom_{seed}")
    broken = cases / "broken"
    broken.mkdir()
    shutil.copy(cases / "phantom_3" / "pre_contrast.nii.gz", broken / "pre_contrast.nii.gz")
    (broken / "low_dose.nii.gz").write_bytes(b"\x1f\x8b not really a NIfTI file")
    (broken / "case.json").write_text('{"dose": 0.25, "field_strength": 3}\n')
    out = root / "out"
    code = cli.main(["predict", "--cases", str(cases), "--output", str(out)] + OPTIONS)
    return {"root": root, "cases": cases, "out": out, "code": code}


def test_a_folder_cohort_finishes_the_good_cases_and_reports_the_broken_one(cohort):
    out = cohort["out"]
    assert cohort["code"] == 1  # one case failed
    rows = _summary(out)
    assert set(rows) == {"phantom_3", "phantom_4", "broken"}
    assert rows["phantom_3"]["status"] == rows["phantom_4"]["status"] == "done"
    assert rows["broken"]["status"] == "failed" and "low_dose.nii.gz" in rows["broken"]["error"]
    assert int(rows["phantom_3"]["n_regions"]) >= 1 and float(rows["phantom_3"]["seconds"]) > 0
    assert not (out / "broken").exists()  # nothing half-written for the failed case
    from PIL import Image
    with Image.open(out / CONTACT_SHEET) as sheet:  # every case's montage stacked, plus the failed case's line
        assert sheet.width == 1200 and sheet.height > 2 * 28 + 200
    markdown = (out / SUMMARY_MD).read_text()
    assert "2 of 3 cases done" in markdown and "not for diagnosis" in markdown
    for name in ("phantom_3", "phantom_4"):
        assert (out / name / "synthetic_standard_dose.nii.gz").is_file() and (out / name / "prediction.png").is_file()


def test_the_record_follows_its_schema_and_names_inputs_and_sources(cohort):
    import jsonschema
    record = json.loads((cohort["out"] / "phantom_3" / "record.json").read_text())
    jsonschema.validate(record, schema())
    assert record["schema_version"] == RECORD_SCHEMA_VERSION
    case = cohort["cases"] / "phantom_3"
    assert record["inputs"]["pre_contrast"]["sha256"] == hashlib.sha256(
        (case / "pre_contrast.nii.gz").read_bytes()).hexdigest()
    assert record["inputs"]["low_dose"]["path"] == str((case / "low_dose_025.nii.gz").resolve())
    assert record["inputs"]["pre_contrast"]["geometry"]["spacing_mm"] == pytest.approx([2.0, 2.0, 2.0])
    assert record["acquisition"]["dose"] == {"value": 0.25, "source": "phantom.json"}
    assert record["acquisition"]["field_strength"]["source"] == "phantom.json"
    assert "stages" in record and record["stages"]["network"]["seconds"] > 0
    bad = dict(record, schema_version=99)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())
    bad = dict(record, inputs={"pre_contrast": {"path": "x", "sha256": "not a digest", "geometry": {}}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())


def test_resume_runs_only_the_unfinished_cases(cohort, capsys):
    out, cases = cohort["out"], cohort["cases"]
    first = _digests(out / "phantom_3")
    assert cli.main(["predict", "--cases", str(cases), "--output", str(out)] + OPTIONS) == 2
    assert "--resume" in capsys.readouterr().err  # an earlier run's results are not redone silently
    shutil.rmtree(out / "phantom_4")  # as if the first run had been killed after its first case
    shutil.rmtree(cases / "broken")
    assert cli.main(["predict", "--cases", str(cases), "--output", str(out), "--resume"] + OPTIONS) == 0
    err = capsys.readouterr().err
    assert "phantom_3: done earlier, skipped" in err and "phantom_4: done in" in err
    assert _digests(out / "phantom_3") == first
    rows = _summary(out)
    assert rows["phantom_3"]["status"] == "done earlier" and rows["phantom_4"]["status"] == "done"


def test_a_table_cohort_with_values_from_table_and_command_line(cohort, tmp_path, capsys):
    cases = cohort["cases"]
    table = tmp_path / "cohort.tsv"
    shutil.copytree(cases / "phantom_4", tmp_path / "p4")
    table.write_text("case\tpre\tlow\tdose\n"
                     "p4\tp4/pre_contrast.nii.gz\tp4/low_dose_025.nii.gz\t0.25\n"
                     "gone\tp4/pre_contrast.nii.gz\tp4/missing.nii.gz\t0.25\n")
    out = tmp_path / "out"
    assert cli.main(["predict", "--table", str(table), "--field-strength", "3", "--output", str(out)] + OPTIONS) == 1
    rows = _summary(out)
    assert rows["p4"]["status"] == "done" and rows["gone"]["status"] == "failed"
    assert "missing.nii.gz does not exist" in rows["gone"]["error"]
    record = json.loads((out / "p4" / "record.json").read_text())
    assert record["acquisition"]["dose"]["source"] == "table"
    assert record["acquisition"]["field_strength"] == {"value": 3.0, "source": "argument"}
    assert record["acquisition"]["agent"]["source"] == "default"


def test_cohort_descriptions_that_cannot_run_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="holds no case folder"):
        cases_from_folder(tmp_path)
    table = tmp_path / "t.csv"
    table.write_text("name,pre,low\na,x,y\n")
    with pytest.raises(ValueError, match="lacks case"):
        cases_from_table(table)
    (tmp_path / "x.nii.gz").write_bytes(b"")
    table.write_text("case,pre,low,dose\na,x.nii.gz,x.nii.gz,0.2\na,x.nii.gz,x.nii.gz,0.2\n")
    with pytest.raises(ValueError, match="two cases are named 'a'"):
        cases_from_table(table)
    table.write_text("case,pre,low,dose\na,x.nii.gz,x.nii.gz,a fifth\n")
    assert "is not a number" in cases_from_table(table)[0].error
    table.write_text("case,pre,low\na,x.nii.gz,x.nii.gz\n")
    assert "no dose and no field strength" in cases_from_table(table)[0].resolved(None, None, None).error
    for argv, words in ((["--table", str(table), "--cases", str(tmp_path)], "not both"),
                        (["--table", str(table), "--pre", "x.nii.gz"], "a cohort"),
                        ([], "--pre, --low, --dose, --field-strength missing"),
                        (["--table", str(table), "--workers", "none"], "--workers 'none'")):
        assert cli.main(["predict", "--output", str(tmp_path / "o")] + argv) == 2
        assert words in capsys.readouterr().err


def test_the_same_cohort_on_a_dask_cluster_gives_the_same_images(cohort, tmp_path):
    """A real Dask scheduler and two worker processes (started here as ``dask scheduler`` / ``dask worker``
    would run on a cluster): the cohort's images are byte-identical to those of the serial run."""
    import socket
    import subprocess
    import sys
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    python = [sys.executable, "-m"]
    scheduler = subprocess.Popen(python + ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                           str(port), "--no-dashboard"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen(python + ["distributed.cli.dask_worker", address, "--nworkers", "1", "--nthreads",
                                          "1", "--no-dashboard", "--memory-limit", "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        from distributed import Client
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        out = tmp_path / "dask"
        cases = tmp_path / "cases"
        for name in ("phantom_3", "phantom_4"):
            shutil.copytree(cohort["cases"] / name, cases / name)
        assert cli.main(["predict", "--cases", str(cases), "--output", str(out), "--scheduler", address]
                        + OPTIONS) == 0
    finally:
        for process in workers + [scheduler]:
            process.terminate()
        for process in workers + [scheduler]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        time.sleep(0.1)
    rows = _summary(out)
    assert {r["status"] for r in rows.values()} == {"done"}
    for name in ("phantom_3", "phantom_4"):
        serial = cohort["out"] / name
        for image in sorted(p.name for p in serial.glob("*.nii.gz")):
            assert (out / name / image).read_bytes() == (serial / image).read_bytes(), f"{name}/{image}"


def test_a_bids_dataset_gives_one_case_per_session(tmp_path, capsys):
    """BIDS: *_T1w without ce- is the pre-contrast, with ce-<label> the low dose; the field strength from the
    low dose's sidecar; a session without a pre-contrast or with two contrast images is a failed case that names
    the fix. The names follow the entities."""
    from GadoReduceLib.cohort.cases import cases_from_bids, is_bids
    root = tmp_path / "bids"
    (root / "derivatives" / "sub-99" / "anat").mkdir(parents=True)
    (root / "derivatives" / "sub-99" / "anat" / "sub-99_T1w.nii.gz").write_bytes(b"")  # never read
    (root / "dataset_description.json").write_text('{"Name": "test", "BIDSVersion": "1.9.0"}')
    files = {"sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz": None,
             "sub-01/ses-1/anat/sub-01_ses-1_ce-low_T1w.nii.gz": {"MagneticFieldStrength": 1.5},
             "sub-02/anat/sub-02_T1w.nii.gz": None, "sub-02/anat/sub-02_ce-low_T1w.nii.gz": None,
             "sub-02/anat/sub-02_ce-full_T1w.nii.gz": None, "sub-03/anat/sub-03_ce-low_T1w.nii.gz": None}
    for name, sidecar in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
        if sidecar:
            (root / name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    assert is_bids(root)
    cases = {c.name: c for c in cases_from_bids(root)}
    assert set(cases) == {"sub-01_ses-1", "sub-02", "sub-03"}
    first = cases["sub-01_ses-1"]
    assert first.error is None and first.pre.name == "sub-01_ses-1_T1w.nii.gz"
    assert first.low.name == "sub-01_ses-1_ce-low_T1w.nii.gz"
    assert first.field_strength == 1.5 and first.sources == {"field_strength": "bids"}
    assert "--bids-low-ce" in cases["sub-02"].error and "without a ce- entity" in cases["sub-03"].error
    chosen = {c.name: c for c in cases_from_bids(root, low_label="low")}
    assert chosen["sub-02"].error is None and chosen["sub-02"].low.name == "sub-02_ce-low_T1w.nii.gz"
    assert "no *_T1w image with ce-full" in {c.name: c for c in cases_from_bids(root, "full")}["sub-01_ses-1"].error


def test_progress_is_one_line_on_a_terminal_and_plain_lines_otherwise():
    import io

    from GadoReduceLib.cohort.run import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    for stream, terminal in ((io.StringIO(), False), (Terminal(), True)):
        progress = Progress(4, stream)
        progress.start(2, "phantom_1")
        progress.step(50.0, "Registering")
        progress.log("phantom_1: done in 3.0 s")
        text = stream.getvalue()
        if terminal:  # rewritten in place: the cohort is (1 + 0.5) / 4 done
            assert "\r\033[K[cohort  38 %] case 2/4 phantom_1: Registering" in text
            assert text.endswith("\r\033[Kphantom_1: done in 3.0 s\n") and text.count("\n") == 1
        else:
            assert text.splitlines() == ["[case 2/4] phantom_1", "phantom_1 [ 50 %] Registering",
                                         "phantom_1: done in 3.0 s"]
