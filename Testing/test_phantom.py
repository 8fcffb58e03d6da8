"""Digital phantom: determinism, noise sigma, motion ground truth, dose response, geometry, CLI, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from GadoReduceLib import cli
from GadoReduceLib.physics.agents import get_agent
from GadoReduceLib.io.imageio import Geometry, read_image
from GadoReduceLib.phantom.generate import PhantomConfig, dose_name, generate_phantom, write_phantom

ENHANCING = ("solid", "ring", "glioblastoma")


@pytest.fixture(scope="module")
def case():
    return generate_phantom(PhantomConfig(seed=3))


@pytest.fixture(scope="module")
def quiet_pair():
    """Same seed without noise, once with motion and once without (the anatomy is the same)."""
    common = dict(seed=5, noise_level=0.0, doses=(0.1, 0.33))
    return (generate_phantom(PhantomConfig(**common)),
            generate_phantom(PhantomConfig(**common, max_motion_deg=0.0, max_motion_mm=0.0)))


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def test_same_seed_same_bytes_other_seed_other_anatomy(case, tmp_path):
    paths_a = write_phantom(case, tmp_path / "a")
    paths_b = write_phantom(generate_phantom(PhantomConfig(seed=3)), tmp_path / "b")
    assert paths_a.keys() == paths_b.keys()
    for name in paths_a:
        assert paths_a[name].read_bytes() == paths_b[name].read_bytes(), name
    other = generate_phantom(PhantomConfig(seed=4))
    mask_a, mask_o = _array(case.brain_mask).astype(bool), _array(other.brain_mask).astype(bool)
    dice = 2 * (mask_a & mask_o).sum() / (mask_a.sum() + mask_o.sum())
    assert dice < 0.97, f"another seed should give another anatomy (brain mask Dice {dice:.3f})"
    assert not np.allclose(_array(case.pre_contrast), _array(other.pre_contrast))
    centres = lambda c: [tuple(np.round(l["centre_lps_mm"], 1)) for l in c.parameters["lesions"]]  # noqa: E731
    assert centres(case) != centres(other)


def test_noise_sigma_in_background_matches_sidecar(case):
    """Background air: Rayleigh magnitudes of sigma * g; E[M^2] = 2 (sigma g)^2 gives sigma per image."""
    head = _array(case.head_mask).astype(bool)
    air = ~ndimage.binary_dilation(head, iterations=5)
    g = _array(case.g_factor)
    assert air.sum() > 50000 and g.max() > 1.2
    scans = {"pre_contrast": case.pre_contrast, "standard_dose": case.standard_dose,
             **{dose_name(d): image for d, image in case.low_dose.items()}}
    for name, image in scans.items():
        magnitude = _array(image)[air] / g[air]
        sigma_m2 = np.sqrt(np.mean(magnitude ** 2) / 2.0)
        sigma_mean = np.mean(magnitude) * np.sqrt(2.0 / np.pi)
        expected = case.parameters["scans"][name]["noise_sigma"]
        assert expected == case.parameters["noise"]["noise_sigma"] > 0
        assert abs(sigma_m2 / expected - 1) < 0.10, (name, sigma_m2, expected)
        assert abs(sigma_mean / expected - 1) < 0.10, (name, sigma_mean, expected)
    # the g-factor matters: without dividing by it the estimate is biased high
    raw = np.sqrt(np.mean(_array(case.pre_contrast)[air] ** 2) / 2.0)
    assert raw > case.parameters["noise"]["noise_sigma"] * 1.005


def _residual_motion_mm(post: sitk.Image, reference: sitk.Image, matrix: np.ndarray, mask: np.ndarray,
                        centre: np.ndarray, iterations: int = 3) -> float:
    """Mean displacement (mm, over ``mask`` voxels) between ``matrix`` (pre -> post, LPS 4x4) and the
    rigid transform that best aligns ``post`` to ``reference``: Gauss-Newton on the image gradient,
    starting at ``matrix`` (identity-direction grids)."""
    geometry = Geometry.from_image(reference)
    fixed = _array(reference).astype(float)
    m = geometry.ijk_to_lps()
    points = np.argwhere(mask)[:, ::-1] @ m[:3, :3].T + m[:3, 3]
    correction = np.eye(4)  # accumulated correction C: the best transform is matrix @ C
    for _ in range(iterations):
        total = matrix @ correction
        affine = sitk.AffineTransform(3)
        affine.SetMatrix(tuple(total[:3, :3].ravel()))
        affine.SetTranslation(tuple(total[:3, 3]))
        moving = _array(sitk.Resample(post, reference, affine, sitk.sitkBSpline, 0.0)).astype(float)
        grads = np.gradient(moving, *geometry.spacing[::-1])  # d/dz, d/dy, d/dx
        gradient = np.stack([grads[2][mask], grads[1][mask], grads[0][mask]], axis=1)  # LPS x, y, z
        jacobian = np.concatenate([np.cross(points - centre, gradient), gradient], axis=1)
        delta, *_ = np.linalg.lstsq(jacobian, fixed[mask] - moving[mask], rcond=None)
        step = np.eye(4)
        step[:3, :3] = Rotation.from_rotvec(delta[:3]).as_matrix()
        step[:3, 3] = centre + delta[3:] - step[:3, :3] @ centre
        correction = correction @ step
    moved = points @ correction[:3, :3].T + correction[:3, 3]
    return float(np.linalg.norm(moved - points, axis=1).mean())


def test_sidecar_motion_realigns_scans(quiet_pair):
    moved, still = quiet_pair
    brain = _array(still.brain_mask).astype(bool)
    mask = ndimage.binary_erosion(brain, iterations=2)
    for name in ("standard_dose", dose_name(0.33)):
        motion = moved.parameters["scans"][name]["motion"]
        assert motion["brain_displacement_mm"]["mean"] > 0.5  # there is motion to undo
        matrix = np.asarray(motion["pre_to_post_lps"])
        # the elastix-style parameters describe the same mapping as the matrix
        euler = sitk.Euler3DTransform()
        euler.SetCenter(motion["elastix"]["CenterOfRotationPoint"])
        euler.SetParameters(motion["elastix"]["TransformParameters"])
        probe = np.array([[0.0, 0.0, 0.0], [60.0, -40.0, 30.0], [-50.0, 70.0, -20.0]])
        mapped = np.array([euler.TransformPoint(tuple(p)) for p in probe])
        assert np.abs(mapped - (probe @ matrix[:3, :3].T + matrix[:3, 3])).max() < 1e-9
        post = moved.standard_dose if name == "standard_dose" else moved.low_dose[0.33]
        reference = still.standard_dose if name == "standard_dose" else still.low_dose[0.33]
        centre = np.asarray(motion["center_of_rotation_lps_mm"])
        error = _residual_motion_mm(post, reference, matrix, mask, centre)
        assert error < 0.1, f"{name}: realigned with the sidecar's motion, residual misalignment {error:.3f} mm"
        if name == "standard_dose":
            # the measurement sees misalignment: a 0.5 mm error in the transform is found ...
            wrong = matrix.copy()
            wrong[:3, 3] += [0.0, 0.5, 0.0]
            assert 0.45 < _residual_motion_mm(post, reference, wrong, mask, centre) < 0.55
            # ... and, starting from no transform, it recovers the motion of the sidecar
            recovered = _residual_motion_mm(post, reference, np.eye(4), mask, centre)
            assert abs(recovered / motion["brain_displacement_mm"]["mean"] - 1) < 0.1


def test_elastix_transform_file_realigns_like_the_matrix(quiet_pair, tmp_path):
    """transformix with the written motion file gives the realignment of the sidecar's matrix."""
    transformix = shutil.which("transformix")
    if transformix is None:
        pytest.skip("the elastix 'transformix' executable is not on PATH (Debian/Ubuntu: apt install elastix)")
    moved, _ = quiet_pair
    paths = write_phantom(moved, tmp_path)
    out = tmp_path / "transformix"
    out.mkdir()
    subprocess.run([transformix, "-tp", str(paths["motion_standard_dose"]), "-in", str(paths["standard_dose"]),
                    "-out", str(out)], check=True, capture_output=True, timeout=120)
    result = read_image(out / "result.nii.gz")
    matrix = np.asarray(moved.parameters["scans"]["standard_dose"]["motion"]["pre_to_post_lps"])
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(tuple(matrix[:3, :3].ravel()))
    affine.SetTranslation(tuple(matrix[:3, 3]))
    expected = _array(sitk.Resample(moved.standard_dose, moved.pre_contrast, affine, sitk.sitkBSpline, 0.0))
    assert Geometry.from_image(result).is_close(Geometry.from_image(moved.pre_contrast), atol=1e-4)
    assert np.abs(_array(result) - expected).max() < 1e-4 * expected.max()


def test_relative_enhancement_grows_with_dose_but_not_proportionally(quiet_pair):
    _, still = quiet_pair  # no motion: the pre-contrast-frame labels fit every scan
    labels = _array(still.lesion_labels)
    pre = _array(still.pre_contrast).astype(float)
    doses = {0.1: still.low_dose[0.1], 0.33: still.low_dose[0.33], 1.0: still.standard_dose}
    # without noise and motion, standard dose minus pre-contrast is exactly the true contrast signal
    truth = _array(still.true_contrast_signal)
    assert np.abs(_array(still.standard_dose) - pre - truth).max() < 1e-3 * truth.max()
    normal_brain = _array(still.brain_mask).astype(bool) & (labels == 0)
    assert truth[labels > 0].mean() > 10 * np.median(np.abs(truth[normal_brain]))
    checked = 0
    for lesion in still.parameters["lesions"]:
        region = labels == lesion["label"]
        if lesion["type"] not in ENHANCING or region.sum() < 5:
            continue
        enhancement = {d: (_array(img)[region].mean() - pre[region].mean()) / pre[region].mean()
                       for d, img in doses.items()}
        assert 0 < enhancement[0.1] < enhancement[0.33] < enhancement[1.0], (lesion, enhancement)
        per_dose = [enhancement[d] / d for d in (0.1, 0.33, 1.0)]
        assert per_dose[0] > per_dose[1] * 1.03 > per_dose[2] * 1.06, (lesion["type"], per_dose)
        checked += 1
    assert checked >= 2
    # non-enhancing lesions do not enhance (less than 2 % of the enhancing lesions' mean)
    for lesion in still.parameters["lesions"]:
        region = labels == lesion["label"]
        if lesion["type"] == "non_enhancing" and region.sum() >= 5:
            change = (_array(still.standard_dose)[region].mean() - pre[region].mean()) / pre[region].mean()
            assert abs(change) < 0.05


def test_written_files_geometry_and_sidecar(case, tmp_path):
    paths = write_phantom(case, tmp_path)
    sidecar = json.loads(paths["phantom.json"].read_text())
    grid = Geometry.from_image(case.pre_contrast)
    for name in ("pre_contrast", "standard_dose", dose_name(0.1), dose_name(0.33), "lesion_labels", "brain_mask"):
        image = read_image(paths[name])
        assert Geometry.from_image(image).is_close(grid, atol=1e-4), name
    assert grid.orientation() == "LPS" and np.linalg.norm(grid.origin) > 10
    assert list(grid.size) == sidecar["grid"]["size_ijk"]
    labels = _array(read_image(paths["lesion_labels"]))
    assert set(np.unique(labels)) - {0} <= {l["label"] for l in sidecar["lesions"]}
    brain = _array(read_image(paths["brain_mask"])).astype(bool)
    volume_ml = brain.sum() * np.prod(grid.spacing) / 1000
    assert 1000 < volume_ml < 1900 and abs(volume_ml - sidecar["brain_mask"]["volume_ml"]) < 1e-6
    assert (labels[~brain] == 0).all(), "lesions lie inside the brain mask"
    head = _array(case.head_mask).astype(bool)
    assert (brain & ~head).sum() == 0 and head.sum() > 1.5 * brain.sum(), "a head with skull and scalp"
    m = np.linalg.inv(grid.ijk_to_lps())
    for lesion in sidecar["lesions"]:
        assert lesion["type"] in ("solid", "ring", "glioblastoma", "non_enhancing")
        i, j, k = np.round(m @ np.r_[lesion["centre_lps_mm"], 1.0])[:3].astype(int)
        assert brain[k, j, i]
        if lesion["type"] == "solid" and lesion["diameter_mm"] >= 8:
            assert labels[k, j, i] == lesion["label"]
            sphere = np.pi / 6 * lesion["diameter_mm"] ** 3
            assert 0.6 < lesion["total_volume_mm3"] / sphere < 1.4
        assert np.allclose(lesion["centre_ras_mm"], [-lesion["centre_lps_mm"][0], -lesion["centre_lps_mm"][1],
                                                     lesion["centre_lps_mm"][2]])
    assert {"solid", "ring", "glioblastoma", "non_enhancing"} <= {l["type"] for l in sidecar["lesions"]}
    assert sidecar["agent"]["name"] == "gadobutrol" and sidecar["field_strength_t"] == 3.0
    assert sidecar["scans"]["standard_dose"]["dose"] == 1.0 and sidecar["doses"] == [0.1, 0.33]
    assert sidecar["sequence"]["kind"] == "spgr" and sidecar["agent"]["relaxivity_l_per_mmol_s"] > 0


def test_anisotropic_voxels_average_the_object_and_conditions_are_used():
    common = dict(seed=8, field_strength=1.5, agent="Dotarem", sequence="mprage", doses=(0.25,),
                  lesions={"solid": 2}, noise_level=0.0, bias_strength=0.0)
    thick = generate_phantom(PhantomConfig(**common, spacing_mm=(2.0, 2.0, 4.0)))
    thin = generate_phantom(PhantomConfig(**common))
    assert thick.pre_contrast.GetSpacing() == (2.0, 2.0, 4.0) and thick.pre_contrast.GetSize()[2] == 44
    assert thick.parameters["supersampling"] == [1, 1, 2]
    # a 4 mm voxel is the mean of the two 2 mm voxels it covers (box slice profile), same anatomy
    thin_pre = _array(thin.pre_contrast)
    averaged = 0.5 * (thin_pre[0::2] + thin_pre[1::2])
    assert np.abs(_array(thick.pre_contrast) - averaged).max() < 1e-3 * averaged.max()
    assert thick.pre_contrast.GetOrigin()[2] == pytest.approx(thin.pre_contrast.GetOrigin()[2] + 1.0)
    p = thick.parameters
    assert p["agent"]["name"] == "gadoterate" and p["field_strength_t"] == 1.5 and p["sequence"]["kind"] == "mprage"
    assert list(thick.low_dose) == [0.25] and [l["type"] for l in p["lesions"]] == ["solid", "solid"]
    labels = _array(thick.lesion_labels)
    pre, post = _array(thick.pre_contrast), _array(thick.standard_dose)
    assert post[labels > 0].mean() > pre[labels > 0].mean() * 1.1
    assert p["agent"]["relaxivity_l_per_mmol_s"] == get_agent("gadoterate").relaxivity(1.5)


def test_cli_writes_case_and_preview(tmp_path, capsys):
    out, png = tmp_path / "case", tmp_path / "preview.png"
    rc = cli.main(["synth", "phantom", "--output", str(out), "--seed", "2", "--doses", "0.25,0.5",
                   "--lesions", "ring=1,glioblastoma=1", "--preview", str(png)])
    assert rc == 0
    sidecar = json.loads((out / "phantom.json").read_text())
    assert sidecar["seed"] == 2 and sidecar["doses"] == [0.25, 0.5]
    for name in ("pre_contrast", "low_dose_025", "low_dose_050", "standard_dose", "lesion_labels", "brain_mask"):
        assert (out / f"{name}.nii.gz").stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "phantom.json" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--doses", "0.1,1.5"], "not in (0, 1)"),
    (["--doses", "0.1,0.101"], "same percent"),
    (["--doses", "0.004"], "from 0.01 to 0.99"),
    (["--doses", "a,b"], "comma-separated"),
    (["--spacing", "1,1"], "3 comma-separated"),
    (["--spacing", "1,1,-2"], "between 0.3 and 8"),
    (["--agent", "gadolinium-x"], "unknown contrast agent"),
    (["--field-strength", "7"], "outside the supported range"),
    (["--lesions", "cyst=2"], "lesion counts"),
    (["--noise-level", "-1"], "noise_level"),
    (["--max-motion-deg", "45"], "not head motion"),
    (["--preview", "x.jpg"], ".png"),
])
def test_bad_input_is_one_clear_error(tmp_path, capsys, args, words):
    rc = cli.main(["synth", "phantom", "--output", str(tmp_path / "case"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "case").exists(), "nothing is written on bad input"
    with pytest.raises(ValueError):
        PhantomConfig(size="huge").validated()
