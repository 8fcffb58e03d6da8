"""Image registration with elastix parameter files, behind one call and three backends.

``register(fixed, moving, parameter_file, backend=...)`` runs elastix with a parameter file in
the text format that SlicerElastix, the ``elastix`` executable and itk-elastix all read
(GadoReduce ships its files in ``Resources/Elastix``). Backends:

- ``"slicer"``: SlicerElastix's ``ElastixLogic.registerVolumes`` (inside 3D Slicer with the
  SlicerElastix extension; it runs SlicerElastix's bundled elastix executable);
- ``"itk"``: itk-elastix in-process (plain Python);
- ``"executable"``: the ``elastix`` program found on PATH (or given by ``elastix_path``);
- ``"auto"``: slicer when available, else executable when found, else itk. The executable comes first
  because it starts in a fraction of a second, while loading itk-elastix's Python module takes about 9 s in
  every new process (measured, issue 14); both give the same transform from the same parameter file.

Direction convention (elastix, ITK): the returned transform maps points of the FIXED image to
points of the MOVING image (LPS mm), which is exactly what resampling the moving image onto the
fixed grid needs: ``resampled(x) = moving(transform(x))``. All backends resample with
SimpleITK from that transform, so they differ only in the transform they estimate.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..io.imageio import check_3d, write_image
from ..io.resources import resource_path

BACKENDS = ("auto", "slicer", "itk", "executable")
RIGID_PARAMETER_FILE = ("Elastix", "rigid_mattes_mi.txt")
"""Post-contrast (moving) to pre-contrast (fixed): rigid, Mattes mutual information."""
AFFINE_ATLAS_PARAMETER_FILE = ("Elastix", "affine_atlas_mattes_mi.txt")
"""Brain atlas template (moving) to pre-contrast (fixed): affine, Mattes mutual information."""


@dataclass
class RegistrationResult:
    """Outcome of :func:`register`.

    transform: maps fixed-image points to moving-image points (LPS mm).
    resampled: the moving image resampled onto the fixed grid (float32).
    metric: negative mutual information (nats, 32x32 joint histogram; lower is better) of the
        fixed and resampled images in the fixed mask (:func:`mutual_information`); comparable
        across backends.
    backend: the backend that ran; parameter_map: elastix's TransformParameters text;
    seconds: wall time of the registration (without resampling).
    """

    transform: sitk.Transform
    resampled: sitk.Image
    metric: float
    backend: str
    parameter_map: str
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def parameter_file_path(name: str | os.PathLike | tuple) -> Path:
    """A parameter file: a path, or a tuple like :data:`RIGID_PARAMETER_FILE` under Resources."""
    if isinstance(name, tuple):
        return resource_path(*name)
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"elastix parameter file {path} does not exist; use one of GadoReduce's files in "
                         f"Resources/Elastix or give the path of an elastix parameter text file.")
    return path


def in_slicer() -> bool:
    """True inside 3D Slicer's Python (the ``slicer`` module with an application object)."""
    try:
        import slicer  # noqa: F401
        return hasattr(slicer, "app") and slicer.app is not None
    except ImportError:
        return False


def slicer_elastix_available() -> bool:
    """True inside 3D Slicer with the SlicerElastix extension (its ``Elastix`` module importable)."""
    if not in_slicer():
        return False
    try:
        from Elastix import ElastixLogic  # noqa: F401
        return True
    except ImportError:
        return False


def _itk_available() -> bool:
    try:
        import itk  # noqa: F401
        return hasattr(itk, "ElastixRegistrationMethod")
    except ImportError:
        return False


def find_elastix_executable(elastix_path: str | os.PathLike | None = None) -> Path:
    """The elastix program: ``elastix_path``, SlicerElastix's bundled one inside Slicer, or PATH."""
    if elastix_path:
        path = Path(elastix_path)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ValueError(f"elastix executable {path} does not exist or is not executable.")
    if in_slicer():
        try:
            from Elastix import ElastixLogic
            bundled = Path(ElastixLogic().getElastixBinDir()) / ("elastix.exe" if os.name == "nt" else "elastix")
            if bundled.is_file():
                return bundled
        except Exception:  # noqa: BLE001 -- fall back to PATH
            pass
    found = shutil.which("elastix")
    if not found:
        raise ValueError("The elastix executable was not found on PATH. Install elastix (Debian/Ubuntu: "
                         "apt-get install elastix; or https://elastix.dev), pass elastix_path, or use "
                         "backend='itk' (pip install itk-elastix).")
    return Path(found)


def _elastix_env(exe: Path) -> dict | None:
    """SlicerElastix's environment (library paths) for its bundled elastix; None: inherit ours."""
    if not in_slicer():
        return None
    try:
        from Elastix import ElastixLogic
        logic = ElastixLogic()
        if Path(logic.getElastixBinDir()).resolve() == exe.parent.resolve():
            return logic.getElastixEnv()
    except Exception:  # noqa: BLE001 -- plain environment otherwise
        pass
    return None


def choose_backend(backend: str = "auto") -> str:
    """Resolve ``"auto"`` and check that the requested backend can run here."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown registration backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend == "auto":
        if slicer_elastix_available():
            return "slicer"
        try:
            find_elastix_executable()
            return "executable"
        except (ValueError, FileNotFoundError):
            if _itk_available():
                return "itk"
            raise
    if backend == "slicer" and not slicer_elastix_available():
        raise ValueError("backend='slicer' needs 3D Slicer with the SlicerElastix extension (module 'Elastix'); "
                         + ("install SlicerElastix from the Extensions Manager." if in_slicer() else
                            "this Python is not running inside Slicer. Use backend='itk' or 'executable'."))
    if backend == "itk" and not _itk_available():
        raise ValueError("backend='itk' needs itk-elastix (pip install itk-elastix); or use backend='executable'.")
    return backend


# ----------------------------------------------------------------------------- elastix transform text

def _parse_parameter_text(text: str) -> dict[str, list[str]]:
    """Parse elastix ``(Key value value ...)`` lines into {key: [values]} (quotes removed)."""
    params = {}
    for line in text.splitlines():
        line = line.split("//", 1)[0].strip()
        match = re.match(r"^\((\w+)\s+(.*)\)$", line)
        if match:
            params[match.group(1)] = [v.strip('"') for v in re.findall(r'"[^"]*"|\S+', match.group(2))]
    return params


def transform_from_parameter_text(text: str) -> sitk.Transform:
    """SimpleITK transform (fixed -> moving points) from an elastix TransformParameters text.

    Supports EulerTransform, AffineTransform, TranslationTransform and SimilarityTransform in 3D.
    """
    p = _parse_parameter_text(text)
    kind = p.get("Transform", ["?"])[0]
    values = [float(v) for v in p.get("TransformParameters", [])]
    center = [float(v) for v in p.get("CenterOfRotationPoint", ["0", "0", "0"])]
    if p.get("InitialTransformParametersFileName", ["NoInitialTransform"])[0] != "NoInitialTransform":
        raise ValueError("elastix transform files with an initial transform are not supported; "
                         "GadoReduce passes initial translations through the moving image's origin.")
    if kind == "EulerTransform":
        if p.get("ComputeZYX", ["false"])[0] == "true":
            t = sitk.Euler3DTransform()
            t.SetComputeZYX(True)
            t.SetCenter(center)
            t.SetParameters(values)
            return t
        return sitk.Euler3DTransform(center, *values[:3], values[3:6])
    if kind == "AffineTransform":
        return sitk.AffineTransform(values[:9], values[9:12], center)
    if kind == "TranslationTransform":
        return sitk.TranslationTransform(3, values[:3])
    if kind == "SimilarityTransform":
        t = sitk.Similarity3DTransform()
        t.SetCenter(center)
        t.SetParameters(values)
        return t
    raise ValueError(f"elastix transform type {kind!r} is not supported by GadoReduce (linear transforms only).")


# ----------------------------------------------------------------------------- backends

def _to_itk(image: sitk.Image, pixel="float"):
    import itk
    array = sitk.GetArrayViewFromImage(image)
    array = np.ascontiguousarray(array, dtype=np.float32 if pixel == "float" else np.uint8)
    out = itk.GetImageFromArray(array)
    out.SetSpacing(image.GetSpacing())
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(itk.matrix_from_array(np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)))
    return out


def _run_itk(fixed, moving, parameter_file, fixed_mask, moving_mask, threads) -> str:
    import itk
    params = itk.ParameterObject.New()
    params.ReadParameterFile(str(parameter_file))
    method = itk.ElastixRegistrationMethod[itk.Image[itk.F, 3], itk.Image[itk.F, 3]].New()
    method.SetFixedImage(_to_itk(fixed))
    method.SetMovingImage(_to_itk(moving))
    if fixed_mask is not None:
        method.SetFixedMask(_to_itk(fixed_mask, "mask"))
    if moving_mask is not None:
        method.SetMovingMask(_to_itk(moving_mask, "mask"))
    method.SetParameterObject(params)
    method.SetLogToConsole(False)
    if threads:
        method.SetNumberOfThreads(int(threads))
    method.UpdateLargestPossibleRegion()
    result = method.GetTransformParameterObject()
    text_map = result.GetParameterMap(result.GetNumberOfParameterMaps() - 1)
    # ParameterObject.WriteParameterFile raised TypeError in itk-elastix 0.25.4: format the text here.
    return "\n".join(f"({key} {' '.join(_quote(v) for v in vals)})" for key, vals in dict(text_map).items())


def _quote(value: str) -> str:
    try:
        float(value)
        return value
    except ValueError:
        return f'"{value}"'


def _run_executable(fixed, moving, parameter_file, fixed_mask, moving_mask, threads, elastix_path) -> str:
    exe = find_elastix_executable(elastix_path)
    with tempfile.TemporaryDirectory(prefix="gadoreduce-elastix-") as tmp:
        tmp = Path(tmp)
        args = [str(exe), "-f", str(tmp / "fixed.mha"), "-m", str(tmp / "moving.mha"),
                "-p", str(parameter_file), "-out", str(tmp)]
        try:  # verified writes: a full temporary disk is named as such, not as a failed registration
            write_image(sitk.Cast(fixed, sitk.sitkFloat32), tmp / "fixed.mha", compress=False)
            write_image(sitk.Cast(moving, sitk.sitkFloat32), tmp / "moving.mha", compress=False)
            for mask, name, flag in ((fixed_mask, "fixed_mask.mha", "-fMask"),
                                     (moving_mask, "moving_mask.mha", "-mMask")):
                if mask is not None:
                    write_image(sitk.Cast(mask, sitk.sitkUInt8), tmp / name, compress=False)
                    args += [flag, str(tmp / name)]
        except OSError as error:
            raise OSError(f"cannot write the images for elastix into the temporary folder {tmp.parent} ({error}); "
                          "free some space there or set TMPDIR to a folder on a disk with free space") from None
        if threads:
            args += ["-threads", str(int(threads))]
        proc = subprocess.run(args, capture_output=True, text=True, env=_elastix_env(exe))
        out_file = tmp / "TransformParameters.0.txt"
        if proc.returncode != 0 or not out_file.is_file():
            log = (tmp / "elastix.log").read_text(errors="replace") if (tmp / "elastix.log").is_file() else proc.stdout
            tail = " | ".join(line for line in log.strip().splitlines()[-6:] if line.strip())
            raise RuntimeError(f"elastix ({exe}) failed with exit code {proc.returncode}: {tail}")
        return out_file.read_text()


def linear_matrix_of(transform_node, parameter_file) -> np.ndarray:
    """The 4x4 RAS matrix (to parent) of the transform node SlicerElastix filled; RuntimeError when SlicerElastix
    gave no linear transform (it loads a displacement field, a grid transform, when the parameter file does not
    make elastix write an ITK composite file), instead of the identity that the matrix getter then leaves."""
    import vtk
    matrix = vtk.vtkMatrix4x4()
    if not transform_node.IsLinear() or not transform_node.GetMatrixTransformFromParent(matrix):
        raise RuntimeError(
            f"SlicerElastix returned a non-linear transform (a displacement field) for {Path(parameter_file).name}, "
            "not the linear transform GadoReduce needs: the parameter file must contain "
            '(WriteITKCompositeTransform "true") and (ITKTransformOutputFileNameExtension "h5"); '
            "use GadoReduce's own parameter files or the registration backend 'executable'.")
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _run_slicer(fixed, moving, parameter_file, fixed_mask, moving_mask) -> tuple[str, sitk.Transform]:
    """SlicerElastix's ElastixLogic.registerVolumes on temporary MRML nodes (runs inside Slicer only)."""
    import slicer
    from Elastix import ElastixLogic
    from ..io import mrml
    scene = slicer.mrmlScene
    nodes = [mrml.volume_node_from_image(scene, fixed, "GadoReduceFixed"),
             mrml.volume_node_from_image(scene, moving, "GadoReduceMoving")]
    masks = [mrml.volume_node_from_image(scene, sitk.Cast(m, sitk.sitkUInt8), name, "vtkMRMLLabelMapVolumeNode")
             if m is not None else None for m, name in ((fixed_mask, "GadoReduceFixedMask"),
                                                         (moving_mask, "GadoReduceMovingMask"))]
    transform_node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "GadoReduceRegistration")
    try:
        ElastixLogic().registerVolumes(nodes[0], nodes[1], parameterFilenames=[str(parameter_file)],
                                       outputTransformNode=transform_node, fixedVolumeMaskNode=masks[0],
                                       movingVolumeMaskNode=masks[1], forceDisplacementFieldOutputTransform=False)
        ras = linear_matrix_of(transform_node, parameter_file)  # RAS, fixed -> moving (resampling direction)
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        lps = flip @ ras @ flip
        transform = sitk.AffineTransform(lps[:3, :3].ravel().tolist(), lps[:3, 3].tolist())
        return "(Transform \"AffineTransform\") // from SlicerElastix, RAS matrix converted to LPS", transform
    finally:
        for node in nodes + masks + [transform_node]:
            if node is not None:
                scene.RemoveNode(node)


# ----------------------------------------------------------------------------- public API

def mutual_information(fixed: sitk.Image, resampled: sitk.Image, mask: sitk.Image | None = None,
                       bins: int = 32) -> float:
    """Negative mutual information (nats; lower = better aligned) of two images on one grid.

    From a ``bins`` x ``bins`` joint histogram over the voxels in ``mask`` (default: all) where the
    resampled moving image is defined (non-zero); comparable across backends and cheap.
    """
    f = sitk.GetArrayViewFromImage(fixed).astype(np.float32, copy=False)
    m = sitk.GetArrayViewFromImage(resampled).astype(np.float32, copy=False)
    keep = m != 0
    if mask is not None:
        keep &= sitk.GetArrayViewFromImage(mask) > 0
    if keep.sum() < 100:
        return 0.0
    hist, _, _ = np.histogram2d(f[keep], m[keep], bins=bins)
    pxy = hist / hist.sum()
    px, py = pxy.sum(1, keepdims=True), pxy.sum(0, keepdims=True)
    nz = pxy > 0
    return float(-(pxy[nz] * np.log(pxy[nz] / (px @ py)[nz])).sum())


def resample_onto(moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None = None,
                  interpolator=sitk.sitkBSpline, default_value: float = 0.0,
                  pixel_type=sitk.sitkFloat32) -> sitk.Image:
    """``moving(transform(x))`` on the grid of ``reference`` (cubic B-spline by default)."""
    transform = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    return sitk.Resample(moving, reference, transform, interpolator, default_value, pixel_type)


def register(fixed: sitk.Image, moving: sitk.Image, parameter_file=RIGID_PARAMETER_FILE,
             backend: str = "auto", fixed_mask: sitk.Image | None = None, moving_mask: sitk.Image | None = None,
             initial_translation=None, threads: int | None = None, elastix_path=None,
             interpolator=sitk.sitkBSpline, reference: sitk.Image | None = None) -> RegistrationResult:
    """Register ``moving`` to ``fixed`` with an elastix parameter file; see the module docstring.

    fixed_mask / moving_mask: binary images on the fixed / moving grid limiting the metric.
    initial_translation: (3,) mm, a first guess of the fixed->moving translation; it is applied
        by shifting the moving image's origin and folded into the returned transform.
    threads: elastix threads (None: elastix's default). reference: grid of the resampled image
    (default: the fixed grid). Returns a :class:`RegistrationResult`.
    """
    check_3d(fixed, "fixed image")
    check_3d(moving, "moving image")
    parameter_file = parameter_file_path(parameter_file)
    backend = choose_backend(backend)
    fixed_f = sitk.Cast(fixed, sitk.sitkFloat32)
    moving_f = sitk.Cast(moving, sitk.sitkFloat32)
    shift = np.zeros(3) if initial_translation is None else np.asarray(initial_translation, dtype=float)
    if np.any(shift):
        moving_f = sitk.Image(moving_f)
        moving_f.SetOrigin(tuple(np.asarray(moving.GetOrigin()) - shift))
        if moving_mask is not None:
            moving_mask = sitk.Image(moving_mask)
            moving_mask.SetOrigin(tuple(np.asarray(moving_mask.GetOrigin()) - shift))
    start = time.perf_counter()
    if backend == "itk":
        text = _run_itk(fixed_f, moving_f, parameter_file, fixed_mask, moving_mask, threads)
        transform = transform_from_parameter_text(text)
    elif backend == "executable":
        text = _run_executable(fixed_f, moving_f, parameter_file, fixed_mask, moving_mask, threads, elastix_path)
        transform = transform_from_parameter_text(text)
    else:
        text, transform = _run_slicer(fixed_f, moving_f, parameter_file, fixed_mask, moving_mask)
    seconds = time.perf_counter() - start
    if np.any(shift):
        # moving_f(p) = moving(p + shift): the full fixed -> moving map is T(x) + shift.
        transform = _add_translation(transform, shift)
    metric = mutual_information(fixed, resample_onto(moving, fixed, transform, sitk.sitkLinear), fixed_mask)
    resampled = resample_onto(moving, fixed if reference is None else reference, transform, interpolator)
    return RegistrationResult(transform, resampled, metric, backend, text, seconds)


def _add_translation(transform: sitk.Transform, shift: np.ndarray) -> sitk.Transform:
    affine = as_affine(transform)
    affine.SetTranslation(tuple(np.asarray(affine.GetTranslation()) + shift))
    return affine


def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """A linear transform as an AffineTransform with the same center (same mapping of points)."""
    t = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if isinstance(t, sitk.CompositeTransform):
        # ITK applies a composite's transforms last-added first; fold them into one 4x4 matrix
        total = np.eye(4)
        for n in range(t.GetNumberOfTransforms()):
            total = total @ _matrix4(as_affine(t.GetNthTransform(n)))
        return sitk.AffineTransform(total[:3, :3].ravel().tolist(), total[:3, 3].tolist())
    if isinstance(t, sitk.TranslationTransform):
        return sitk.AffineTransform(np.eye(3).ravel().tolist(), t.GetOffset())
    if not hasattr(t, "GetMatrix"):
        raise ValueError(f"Transform {t.GetName()} is not linear.")
    return sitk.AffineTransform(t.GetMatrix(), t.GetTranslation(), t.GetCenter())


def _matrix4(affine: sitk.AffineTransform) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = np.asarray(affine.GetMatrix()).reshape(3, 3)
    c = np.asarray(affine.GetCenter())
    m[:3, 3] = np.asarray(affine.GetTranslation()) + c - m[:3, :3] @ c
    return m


def transform_points(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """Apply a linear ``transform`` to points (N, 3) in mm, vectorised."""
    a = as_affine(transform)
    m = np.asarray(a.GetMatrix()).reshape(3, 3)
    c = np.asarray(a.GetCenter())
    return (np.asarray(points) - c) @ m.T + c + np.asarray(a.GetTranslation())


def target_registration_error(estimated: sitk.Transform, truth: sitk.Transform, mask: sitk.Image,
                              max_points: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Mean and maximum distance (mm) between two linear transforms over the voxels of ``mask``."""
    array = sitk.GetArrayViewFromImage(mask) > 0
    idx = np.argwhere(array)[:, ::-1].astype(float)  # (i, j, k)
    if len(idx) > max_points:
        idx = idx[np.random.default_rng(seed).choice(len(idx), max_points, replace=False)]
    direction = np.asarray(mask.GetDirection()).reshape(3, 3)
    points = idx * np.asarray(mask.GetSpacing()) @ direction.T + np.asarray(mask.GetOrigin())
    d = np.linalg.norm(transform_points(estimated, points) - transform_points(truth, points), axis=1)
    return float(d.mean()), float(d.max())


def register_in_brain(moving: sitk.Image, pre_native: sitk.Image, pre_work: sitk.Image, mask_work: sitk.Image,
                      registration_mask: sitk.Image, backend: str, threads: int | None):
    """Rigid registration of ``moving`` to the pre-contrast (metric inside ``registration_mask``, resampled onto
    the working grid ``pre_work``) and where it has data: (:class:`RegistrationResult`, coverage mask
    (:func:`field_of_view_mask`), valid = brain mask ``mask_work`` and coverage, covered fraction of the brain)."""
    from ..io.profiling import stage
    with stage("registration"):
        reg = register(pre_native, moving, RIGID_PARAMETER_FILE, backend=backend, fixed_mask=registration_mask,
                       threads=threads, reference=pre_work)
    with stage("normalization"):
        coverage = field_of_view_mask(moving, pre_work, reg.transform)
        valid = sitk.And(mask_work, coverage)
        covered = float(sitk.GetArrayViewFromImage(valid).sum()
                        / max(float(sitk.GetArrayViewFromImage(mask_work).sum()), 1.0))
    return reg, coverage, valid, covered


def field_of_view_mask(post: sitk.Image, reference: sitk.Image, transform: sitk.Transform,
                       margin_voxels: int = 2) -> sitk.Image:
    """uint8 mask on ``reference``'s grid: 1 where ``transform`` maps into ``post``'s field of view,
    at least ``margin_voxels`` from its border (where B-spline interpolation sees zero padding)."""
    ones = sitk.Image(post.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(post)
    inner = sitk.BinaryErode(ones, [margin_voxels] * 3, sitk.sitkBall, 0, 1, False)  # border voxels -> 0
    return sitk.Cast(sitk.Resample(inner, reference, transform, sitk.sitkNearestNeighbor, 0), sitk.sitkUInt8)
