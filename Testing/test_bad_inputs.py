"""Bad inputs refused before any work (issue 15): no output may replace an input, whatever the names.

Each case asserts the exit status, that the message names the input, that the inputs are bit-identical
afterwards and that nothing was written."""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib import cli
from GadoReduceLib.io.imageio import write_image


def _image(value: float = 1.0) -> sitk.Image:
    image = sitk.Image([12, 12, 12], sitk.sitkFloat32) + value
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _snapshot(folder) -> dict:
    return {p.name: _digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


PREDICT = ["--dose", "0.3", "--field-strength", "3", "--device", "cpu"]


@pytest.mark.parametrize("command, pre_name, option", [
    ("predict", "synthetic_standard_dose.nii.gz", "--pre"),   # the pre-contrast named like an output
    ("predict", "record.json.nii.gz", None),                  # a harmless name: no refusal for this reason
    ("preprocess", "pre_contrast.nii.gz", "--pre"),
    ("preprocess", "brain_mask.nii.gz", "--pre"),
])
def test_an_output_never_replaces_an_input(tmp_path, capsys, command, pre_name, option):
    folder = tmp_path / "case"
    pre = write_image(_image(), folder / pre_name)
    low = write_image(_image(2.0), folder / ("contrast_signal.nii.gz" if command == "predict" else "low.nii.gz"))
    before = _snapshot(folder)
    args = [command, "--pre", str(pre), "--low", str(low), "--output", str(folder)]
    args += PREDICT + ["--model", str(tmp_path / "absent.pt")] if command == "predict" else []
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    if option is None:  # the low dose (contrast_signal.nii.gz) is refused instead
        assert "--low" in err and "contrast_signal.nii.gz would overwrite" in err, err
    else:
        assert f"{option} {pre}" in err and "would overwrite this input" in err, err
    assert _snapshot(folder) == before, "inputs unchanged, nothing written"


def test_an_input_reached_through_a_link_is_protected(tmp_path, capsys):
    data = tmp_path / "data"
    pre = write_image(_image(), data / "t1.nii.gz")
    low = write_image(_image(2.0), data / "t1ce.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(pre, out / "pre_contrast.nii.gz")
    before = _snapshot(data)
    assert cli.main(["preprocess", "--pre", str(out / "pre_contrast.nii.gz"), "--low", str(low),
                     "--output", str(out)]) == 2
    assert "would overwrite this input" in capsys.readouterr().err
    assert _snapshot(data) == before and sorted(p.name for p in out.iterdir()) == ["pre_contrast.nii.gz"]


def test_qc_montage_onto_an_input_and_output_folder_that_is_a_file(tmp_path, capsys):
    pre = write_image(_image(), tmp_path / "pre.nii.gz")
    low = write_image(_image(2.0), tmp_path / "low.png.nii.gz")
    before = _snapshot(tmp_path)
    assert cli.main(["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(tmp_path / "o"),
                     "--qc", str(pre)]) == 2
    assert f"--pre {pre}" in capsys.readouterr().err
    for command in (["preprocess"], ["predict"] + PREDICT):
        assert cli.main(command + ["--pre", str(pre), "--low", str(low), "--output", str(pre)]) == 2
        assert f"--output {pre} is an existing file, not a folder" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------ damaged files


def _noise_image(shape=(24, 28, 32)) -> sitk.Image:
    rng = np.random.default_rng(7)
    image = sitk.GetImageFromArray(rng.normal(100.0, 20.0, shape).astype(np.float32))
    image.SetSpacing((1.0, 1.0, 1.0))
    return image


def _damage(tmp_path, kind: str):
    good = write_image(_noise_image(), tmp_path / "good.nii.gz")
    data = good.read_bytes()
    if kind == "truncated gzip":
        damaged = data[: len(data) // 2]
    elif kind == "64 flipped bytes":
        damaged = bytearray(data)
        middle = len(damaged) // 2
        damaged[middle:middle + 64] = bytes(b ^ 0xFF for b in damaged[middle:middle + 64])
    else:  # an uncompressed .nii cut short
        damaged = gzip.decompress(data)[:-1000]
    path = tmp_path / ("pre.nii" if kind == "truncated nii" else "pre.nii.gz")
    path.write_bytes(bytes(damaged))
    return path, write_image(_noise_image(), tmp_path / "low.nii.gz")


@pytest.mark.parametrize("kind", ["truncated gzip", "64 flipped bytes", "truncated nii"])
@pytest.mark.parametrize("command", ["predict", "preprocess", "info"])
def test_damaged_nifti_files_are_refused_before_any_work(tmp_path, capsys, kind, command):
    pre, low = _damage(tmp_path, kind)
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    args = {"info": ["info", str(pre)],
            "preprocess": ["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(out)],
            "predict": ["predict", "--pre", str(pre), "--low", str(low), "--output", str(out)] + PREDICT}[command]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"{pre} is damaged" in err and ("gzip" in err or "truncated" in err), err
    assert "Traceback" not in err and _snapshot(tmp_path) == before and not out.exists()


def test_damage_checks_pass_on_good_files_of_every_layout(tmp_path):
    from GadoReduceLib.io.integrity import scan_nifti
    image = _noise_image()
    for name in ("a.nii", "a.nii.gz"):
        scan = scan_nifti(write_image(image, tmp_path / name))
        assert scan.voxels == 24 * 28 * 32 and scan.nonfinite_index.size == 0
    assert scan_nifti(write_image(sitk.Cast(image, sitk.sitkInt16), tmp_path / "b.nii.gz")).voxels == 24 * 28 * 32
    assert scan_nifti(write_image(image, tmp_path / "c.nrrd")) is None  # left to ITK


# --------------------------------------------------------------------------------- non-finite voxels


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_stored_nan_and_inf_voxels_are_seen_in_every_format(tmp_path, capsys, suffix):
    """ITK's NIfTI reader returns stored NaN/inf as 0; GadoReduce reads what the file stores and refuses it."""
    from GadoReduceLib.io.imageio import image_info, read_image
    array = sitk.GetArrayFromImage(_noise_image())
    array[3, 4, 5], array[0, 0, 1], array[10, 11, 12] = np.nan, np.inf, -np.inf
    image = sitk.GetImageFromArray(array)
    pre = tmp_path / f"pre{suffix}"
    sitk.WriteImage(image, str(pre))
    back = sitk.GetArrayFromImage(read_image(pre))
    assert np.isnan(back[3, 4, 5]) and back[0, 0, 1] == np.inf and back[10, 11, 12] == -np.inf
    finite = np.isfinite(array)
    assert np.array_equal(back[finite], array[finite])
    info = image_info(pre)
    assert info["non_finite_voxels"] == 3, info
    low = write_image(_noise_image(), tmp_path / "low.nii.gz")
    before = _snapshot(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pre-contrast image has 3 NaN or infinite voxels" in err, err
    assert _snapshot(tmp_path) == before and not out.exists()


def test_an_all_nan_nifti_is_not_called_constant(tmp_path, capsys):
    array = np.full((8, 9, 10), np.nan, np.float32)
    pre = tmp_path / "pre.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(pre))
    low = write_image(_noise_image(), tmp_path / "low.nii.gz")
    assert cli.main(["preprocess", "--pre", str(pre), "--low", str(low), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "720 NaN or infinite voxels" in err and "constant" not in err, err


# ------------------------------------------------------------------------------ tiny or extreme images


@pytest.mark.parametrize("size", [6, 12])
def test_tiny_images_get_a_message_not_a_traceback(tmp_path, capsys, size):
    """6 voxels made SimpleITK's Gaussian filter raise, 12 made elastix raise: both are refused up front now."""
    rng = np.random.default_rng(size)
    paths = []
    for name in ("pre", "low"):
        image = sitk.GetImageFromArray(rng.normal(100.0, 20.0, (size,) * 3).astype(np.float32))
        paths.append(write_image(image, tmp_path / f"{name}.nii.gz"))
    assert cli.main(["preprocess", "--pre", str(paths[0]), "--low", str(paths[1]), "--output",
                     str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"pre-contrast image has only {size} voxels along one axis" in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------- arguments checked before any image or torch

ARGUMENT_SCRIPT = r"""
import json, sys, time
from GadoReduceLib import cli
cases = json.loads(sys.argv[1])
results = {}
for name, argv in cases.items():
    start = time.perf_counter()
    rc = cli.main(argv)
    results[name] = {"rc": rc, "seconds": time.perf_counter() - start}
print("RESULTS " + json.dumps({"results": results, "torch": "torch" in sys.modules,
                                "itk": "itk" in sys.modules}))
"""


def _unwritable_folder(tmp_path):
    """A folder path that cannot be created: below /sys (read-only in containers), or below a read-only folder
    when not running as root; None when this machine has neither."""
    probe = "/sys/gadoreduce-test-output"
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError:
        return probe + "/out"
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return str(locked / "out")
    return None


@pytest.fixture(scope="module")
def argument_errors(tmp_path_factory):
    """Every argument-only error of predict and preprocess, run in one fresh process whose pre-contrast file is
    damaged: an argument error must come first (no image is read) and torch must not even be imported."""
    import json
    import subprocess
    import sys
    from GadoReduceLib.model.checksums import default_model_path
    tmp = tmp_path_factory.mktemp("arguments")
    good = write_image(_noise_image(), tmp / "good.nii.gz")
    pre = tmp / "pre.nii.gz"
    pre.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # damaged: reading it would fail
    low = write_image(_noise_image(), tmp / "low.nii.gz")
    other = tmp / "other_model.pt"
    data = bytearray(default_model_path().read_bytes())
    data[-100:-36] = bytes(b ^ 0xFF for b in data[-100:-36])  # not the shipped file any more
    other.write_bytes(bytes(data))
    (tmp / "other_model.pt.sha256").write_text("0" * 64 + "  other_model.pt\n")
    earlier = tmp / "earlier"
    earlier.mkdir()
    (earlier / "record.json").write_text('{"from": "an earlier run"}\n')
    (tmp / "note.txt").write_text("a file, not a folder\n")
    base = ["predict", "--pre", str(pre), "--low", str(low), "--dose", "0.25", "--field-strength", "3",
            "--device", "cpu"]
    out = ["--output", str(tmp / "out")]
    predict = {
        "--tile 4": (["--tile", "4"], "--tile 4 is too small"),
        "--tile big": (["--tile", "big"], "--tile must be 'auto', 'whole'"),
        "--device gpu": (["--device", "gpu"], "--device 'gpu' is not a device"),
        "--tta 0": (["--tta", "0"], "--tta must be"),
        "--tta 9": (["--tta", "9"], "--tta must be a number of flips from 1 (none) to 8"),
        "--dose 0": (["--dose", "0"], "--dose 0 asks for a zero-dose prediction, which takes no low-dose image"),
        "--dose 25": (["--dose", "25"], "--dose: dose 25 is outside (0, 1]"),
        "--field-strength 30": (["--field-strength", "30"], "--field-strength: field strength 30 T"),
        "--agent water": (["--agent", "water"], "--agent: unknown contrast agent 'water'"),
        "--threshold-sigmas -1": (["--threshold-sigmas", "-1"], "--threshold-sigmas must be positive"),
        "--min-volume -5": (["--min-volume", "-5"], "--min-volume must be zero or positive"),
        "--memory-limit 0": (["--memory-limit", "0"], "--memory-limit must be positive"),
        "--threads 0": (["--threads", "0"], "--threads must be an integer of at least 1"),
        "--model absent": (["--model", str(tmp / "absent.pt")], "absent.pt' does not exist"),
        "--model bad sidecar": (["--model", str(other)], "does not match its sha256 checksum"),
        "--output file": (["--output", str(tmp / "note.txt")], "is an existing file, not a folder"),
        "--output earlier run": (["--output", str(earlier)], "already holds the outputs of an earlier run (record.json)"),
    }
    if not any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/nvidia0", "/dev/dxg")):
        predict["--device cuda"] = (["--device", "cuda"], "has no NVIDIA GPU driver")
    unwritable = _unwritable_folder(tmp)
    if unwritable:
        predict["--output unwritable"] = (["--output", unwritable], "cannot be written")
    cases = {name: base + (out if "--output" not in extra else []) + extra for name, (extra, _) in predict.items()}
    expected = {name: message for name, (_, message) in predict.items()}
    prep = ["preprocess", "--pre", str(pre), "--low", str(low)]
    (tmp / "prep_earlier").mkdir()
    (tmp / "prep_earlier" / "qc.json").write_text("{}\n")
    for name, extra, message in (
            ("preprocess --qc jpg", ["--output", str(tmp / "p1"), "--qc", str(tmp / "qc.jpg")], "--qc"),
            ("preprocess --threads 0", ["--output", str(tmp / "p2"), "--threads", "0"], "--threads must be"),
            ("preprocess earlier run", ["--output", str(tmp / "prep_earlier")], "earlier run (qc.json)")):
        cases[name], expected[name] = prep + extra, message
    before = _snapshot(tmp)
    run = subprocess.run([sys.executable, "-c", ARGUMENT_SCRIPT, json.dumps(cases)], capture_output=True,
                         text=True, timeout=300)
    line = next(l for l in run.stdout.splitlines() if l.startswith("RESULTS "))
    summary = json.loads(line[len("RESULTS "):])
    messages = [l for l in run.stderr.splitlines() if l.startswith("gadoreduce ")]
    return {"summary": summary, "messages": dict(zip(cases, messages)), "expected": expected, "cases": cases,
            "unchanged": _snapshot(tmp) == before, "created": sorted(p.name for p in tmp.iterdir()),
            "stderr": run.stderr}


def test_argument_errors_come_first_without_torch(argument_errors):
    summary = argument_errors["summary"]
    assert len(argument_errors["cases"]) >= 20
    assert not summary["torch"] and not summary["itk"], "argument checks must not load torch or itk"
    assert argument_errors["unchanged"], "no file was changed or written"
    assert not any(name.startswith((".gadoreduce-partial", "out", "p1", "p2")) for name in argument_errors["created"])
    assert "Traceback" not in argument_errors["stderr"]
    print({name: round(r["seconds"], 3) for name, r in summary["results"].items()})  # figures, not asserted


@pytest.mark.parametrize("case", [
    "--tile 4", "--tile big", "--device gpu", "--tta 0", "--tta 9", "--dose 0", "--dose 25", "--field-strength 30",
    "--agent water", "--threshold-sigmas -1", "--min-volume -5", "--memory-limit 0", "--threads 0",
    "--model absent", "--model bad sidecar", "--output file", "--output earlier run", "--device cuda",
    "--output unwritable", "preprocess --qc jpg", "preprocess --threads 0", "preprocess earlier run"])
def test_each_argument_error_names_its_option(argument_errors, case):
    if case not in argument_errors["cases"]:
        pytest.skip(f"{case}: this machine cannot stage it (a GPU driver, or a writable /sys as root)")
    assert argument_errors["summary"]["results"][case]["rc"] == 2
    message = argument_errors["messages"][case]
    assert argument_errors["expected"][case] in message, message
    assert "pre.nii.gz is damaged" not in message, "the argument must be checked before the damaged image is read"


# ---------------------------------------------------------------- whole runs: phantom pair in a real process


@pytest.fixture(scope="module")
def phantom_pair(tmp_path_factory):
    """The 2 mm phantom's pre-contrast and 25 % low dose as NIfTI files (a case that reaches registration)."""
    from GadoReduceLib.phantom.generate import PhantomConfig, generate_phantom
    case = generate_phantom(PhantomConfig(seed=3, doses=(0.25,), size="small", max_motion_deg=3.0,
                                          max_motion_mm=3.0))
    folder = tmp_path_factory.mktemp("phantom_pair")
    return (write_image(case.pre_contrast, folder / "pre.nii.gz"),
            write_image(case.low_dose[0.25], folder / "low.nii.gz"))


def _predict_command(pre, low, out, *extra) -> list:
    import sys
    return [sys.executable, "-m", "GadoReduceLib.cli", "predict", "--pre", str(pre), "--low", str(low),
            "--dose", "0.25", "--field-strength", "3", "--device", "cpu", "--output", str(out), *extra]


def _earlier_run(folder):
    """An output folder holding what an earlier run left (its files must survive a failed or interrupted run)."""
    folder.mkdir()
    (folder / "record.json").write_text('{"from": "an earlier run"}\n')
    (folder / "synthetic_standard_dose.nii.gz").write_bytes(b"earlier bytes")
    (folder / "my_notes.txt").write_text("not GadoReduce's\n")
    return _snapshot(folder)


@pytest.mark.parametrize("delay_s", [0.0, 1.5])
def test_an_interrupt_during_registration_leaves_the_output_folder_as_it_was(phantom_pair, tmp_path, delay_s):
    import signal
    import subprocess
    import time
    pre, low = phantom_pair
    inputs = _snapshot(pre.parent)
    out = tmp_path / "out"
    before = _earlier_run(out)
    process = subprocess.Popen(_predict_command(pre, low, out, "--overwrite"), stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True)
    seen = []
    for line in process.stderr:  # progress lines: "[ 10 %] Registration, brain mask, ..."
        seen.append(line)
        if "Registration" in line:
            break
    time.sleep(delay_s)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, seen + [rest]
    assert "interrupted; the output folder was left as it was" in rest and "Traceback" not in rest, rest
    assert _snapshot(out) == before and _snapshot(pre.parent) == inputs
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".gadoreduce-partial")]


@pytest.mark.parametrize("backend", ["executable", "itk"])
def test_a_full_disk_leaves_no_output_and_says_so(phantom_pair, tmp_path, backend):
    """RLIMIT_FSIZE makes every write past 1 MB fail as a full disk does (EFBIG, or ITK's NIfTI writer
    silently stopping): the elastix executable's temporary images (executable) or the outputs (itk-elastix works
    in memory) are refused as incomplete and the run leaves nothing behind."""
    import resource
    import subprocess
    if backend == "itk":
        pytest.importorskip("itk")
    else:
        from GadoReduceLib.preprocessing.registration import find_elastix_executable
        try:
            find_elastix_executable()
        except (FileNotFoundError, ValueError, OSError):
            pytest.skip("the elastix executable is not installed")
    pre, low = phantom_pair
    inputs = _snapshot(pre.parent)
    out = tmp_path / "out"
    before = _earlier_run(out)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    run = subprocess.run(_predict_command(pre, low, out, "--overwrite", "--backend", backend), capture_output=True,
                         text=True, preexec_fn=limit, timeout=600)
    assert run.returncode == 2, run.stderr
    message = next(line for line in run.stderr.splitlines() if line.startswith("gadoreduce predict: error:"))
    assert ("temporary folder" in message) if backend == "executable" else ("was not written completely" in message)
    assert "disk" in message, message
    assert "free some space" in message and "Traceback" not in run.stderr
    assert _snapshot(out) == before and _snapshot(pre.parent) == inputs
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".gadoreduce-partial")]


# ------------------------------------------------------------------ images that hold no usable contrast


def test_identical_pre_contrast_and_low_dose_are_refused_before_registration(phantom_pair, tmp_path, capsys):
    pre, _ = phantom_pair
    copy = tmp_path / "low_copy.nii.gz"
    copy.write_bytes(pre.read_bytes())
    before = _snapshot(tmp_path)
    for command in (["predict"] + PREDICT, ["preprocess"]):
        out = tmp_path / "out"
        assert cli.main(command + ["--pre", str(pre), "--low", str(copy), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--low {copy}" in err and "identical to the pre-contrast image" in err, err
        assert "registration" not in err.lower() and not out.exists()
    assert _snapshot(tmp_path) == before


def test_swapped_inputs_are_named_as_swapped(phantom_pair, tmp_path, capsys):
    pre, low = phantom_pair
    out = tmp_path / "out"
    assert cli.main(["preprocess", "--pre", str(low), "--low", str(pre), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "look swapped" in err and "--pre" in err and "--low" in err, err
    assert not out.exists() and not list(tmp_path.glob(".gadoreduce-partial*"))


# ------------------------------------------------------------------------------------------ model files


def test_a_shipped_model_altered_with_its_sidecar_is_refused(tmp_path, monkeypatch):
    """The sidecar can be recomputed by whoever altered the file; the digest the package knows cannot."""
    from GadoReduceLib.model import checksums
    shipped = checksums.default_model_path()
    models = tmp_path / "Models"
    models.mkdir()
    altered = models / shipped.name
    data = bytearray(shipped.read_bytes())
    data[-100:-36] = bytes(b ^ 0xFF for b in data[-100:-36])
    altered.write_bytes(bytes(data))
    checksums.checksum_path(altered).write_text(f"{checksums.sha256_of(altered)}  {altered.name}\n")
    monkeypatch.setattr(checksums, "default_model_path", lambda: altered)  # as if installed there
    with pytest.raises(checksums.ModelFileError, match="does not match the checksum GadoReduce .* knows"):
        checksums.check_model_file(altered)
    with pytest.raises(checksums.ModelFileError, match="reinstall GadoReduce"):
        checksums.check_model_file(None)
    elsewhere = tmp_path / "mine.pt"  # the same bytes under another name elsewhere: loads, but unverified
    elsewhere.write_bytes(bytes(data))
    checksums.checksum_path(elsewhere).write_text(f"{checksums.sha256_of(elsewhere)}  mine.pt\n")
    check = checksums.check_model_file(elsewhere)
    assert not check.verified and check.warning.startswith(f"unverified model: {elsewhere}")
    copy = tmp_path / "copy.pt"  # a copy of the shipped file under any name is the shipped model
    copy.write_bytes(shipped.read_bytes())
    assert checksums.check_model_file(copy).verified


WRITE_SCRIPT = r"""
import resource, sys
import numpy as np, SimpleITK as sitk
from GadoReduceLib.io.imageio import write_image
image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(40, 50, 60)).astype(np.float32))
resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))
for name in sys.argv[2:]:
    try:
        write_image(image, sys.argv[1] + "/" + name)
        print(name, "WRITTEN")
    except OSError as error:
        print(name, "REFUSED", error)
"""


def test_every_image_format_refuses_a_cut_write(tmp_path):
    """ITK's NIfTI writer reports a full disk only on stderr; write_image finds it by reading the file back."""
    import subprocess
    import sys
    names = ["a.nii.gz", "a.nii", "a.nrrd", "a.mha"]
    run = subprocess.run([sys.executable, "-c", WRITE_SCRIPT, str(tmp_path), *names], capture_output=True,
                         text=True, timeout=120)
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    for name in names:
        assert lines[name].startswith("REFUSED") and "disk may be full" in lines[name], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no cut or temporary file is left"
