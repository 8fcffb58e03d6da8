"""Lesion detection by size: sensitivity and false detections per case (Bone et al. 2022, paper 002).

Paper 002 ("Performance metrics"): "Lesion tracking was automatically computed by pairing lesions
whose centers were closer than half the average of their long and short axes. The lesion detection
metrics were stratified with respect to three minimum size thresholds: 10mm, 5mm, and 0mm [...].
Lesion size was defined as the length of the long axis." Sensitivity = detected reference lesions /
reference lesions; false detection rate = unmatched detected lesions per case.

Here lesions are connected components given as integer label images [k, j, i] (one label per
lesion, 0 = background) and axes are measured in 3D: a lesion's long and short axes are the largest
and smallest diameters of its moment-equivalent ellipsoid (diameter 2 sqrt(5 lambda) for each
eigenvalue lambda of the voxel-coordinate covariance in mm, each voxel counted as a uniform box,
so a ball of radius r gets 2r). ``spacing`` is (i, j, k) in mm, as ``imageio.Geometry.spacing``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIZE_THRESHOLDS_MM = (10.0, 5.0, 0.0)
"""Minimum long-axis lengths (mm) of the nested evaluation configurations of paper 002."""


@dataclass(frozen=True)
class Lesion:
    """One labelled lesion: centroid (k, j, i) in mm from the array origin, axes in mm."""
    label: int
    centroid_mm: tuple[float, float, float]
    long_axis_mm: float
    short_axis_mm: float


def _spacing_kji(spacing) -> np.ndarray:
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.shape != (3,) or not np.all(sp > 0):
        raise ValueError(f"spacing must be three positive values (i, j, k) in mm, got {spacing!r}")
    return sp[::-1]


def lesion_geometry(labels, spacing) -> list[Lesion]:
    """Centroid and long/short axes (mm) of every positive label of ``labels`` (may be empty)."""
    arr = np.asarray(labels)
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be a 3D integer label image [k, j, i], got shape {arr.shape} "
                         f"dtype {arr.dtype}; use scipy.ndimage.label on a mask")
    sp = _spacing_kji(spacing)
    box_var = np.diag(sp ** 2 / 12.0)  # variance of a uniform voxel box along each axis
    lesions = []
    positive = np.unique(arr[arr > 0])
    boxes = ndimage.find_objects(np.where(arr > 0, arr, 0).astype(np.intp), int(positive.max())) if positive.size else []
    for lab in positive:
        box = boxes[int(lab) - 1]  # bounding box: the same voxels in the same order, found faster
        coords = (np.argwhere(arr[box] == lab) + [s.start for s in box]) * sp
        centroid = coords.mean(axis=0)
        centred = coords - centroid
        cov = centred.T @ centred / len(coords) + box_var
        eig = np.clip(np.linalg.eigvalsh(cov), 0.0, None)
        diam = 2.0 * np.sqrt(5.0 * eig)
        lesions.append(Lesion(int(lab), tuple(float(c) for c in centroid),
                              float(diam.max()), float(diam.min())))
    return lesions


def match_lesions(reference_labels, detected_labels, spacing) -> list[tuple[int, int, float]]:
    """One-to-one pairs (reference label, detected label, centroid distance mm).

    A pair qualifies when the centroid distance is below half the mean of the reference lesion's
    long and short axes (paper 002); qualifying pairs are taken greedily by increasing distance.
    """
    ref = np.asarray(reference_labels)
    det = np.asarray(detected_labels)
    if ref.shape != det.shape:
        raise ValueError(f"reference_labels {ref.shape} and detected_labels {det.shape} differ in "
                         "shape; resample both onto the same grid")
    ref_lesions = lesion_geometry(ref, spacing)
    det_lesions = lesion_geometry(det, spacing)
    candidates = []
    for r in ref_lesions:
        tolerance = 0.25 * (r.long_axis_mm + r.short_axis_mm)
        for d in det_lesions:
            dist = float(np.linalg.norm(np.subtract(r.centroid_mm, d.centroid_mm)))
            if dist < tolerance:
                candidates.append((dist, r.label, d.label))
    pairs, used_ref, used_det = [], set(), set()
    for dist, r_lab, d_lab in sorted(candidates):
        if r_lab not in used_ref and d_lab not in used_det:
            pairs.append((r_lab, d_lab, dist))
            used_ref.add(r_lab)
            used_det.add(d_lab)
    return pairs


def detection_by_size(reference_labels, detected_labels, spacing,
                      size_thresholds_mm=SIZE_THRESHOLDS_MM) -> dict[float, dict[str, float]]:
    """Per case, for each minimum size s (mm, long axis): {"n_reference", "n_detected" (matched
    reference lesions >= s), "sensitivity" (NaN when no reference lesion >= s), "false_detections"
    (unmatched detected lesions >= s)}. Matching is done once over all lesions (``match_lesions``).
    """
    pairs = match_lesions(reference_labels, detected_labels, spacing)
    matched_ref = {p[0] for p in pairs}
    matched_det = {p[1] for p in pairs}
    ref_lesions = lesion_geometry(reference_labels, spacing)
    det_lesions = lesion_geometry(detected_labels, spacing)
    out = {}
    for s in size_thresholds_mm:
        refs = [r for r in ref_lesions if r.long_axis_mm >= s]
        hits = sum(r.label in matched_ref for r in refs)
        false = sum(d.label not in matched_det for d in det_lesions if d.long_axis_mm >= s)
        out[float(s)] = {"n_reference": len(refs), "n_detected": hits,
                         "sensitivity": hits / len(refs) if refs else float("nan"),
                         "false_detections": false}
    return out


def aggregate_detection(per_case: list[dict[float, dict[str, float]]]) -> dict[float, dict[str, float]]:
    """Pool ``detection_by_size`` results of several cases: sensitivity = all detected / all
    reference lesions (as paper 002, Table 5), false detections per case = mean over cases."""
    if not per_case:
        raise ValueError("no cases to aggregate; pass at least one detection_by_size result")
    out = {}
    for s in per_case[0]:
        n_ref = sum(c[s]["n_reference"] for c in per_case)
        n_det = sum(c[s]["n_detected"] for c in per_case)
        out[s] = {"n_reference": n_ref, "n_detected": n_det,
                  "sensitivity": n_det / n_ref if n_ref else float("nan"),
                  "false_detections_per_case": sum(c[s]["false_detections"] for c in per_case)
                  / len(per_case)}
    return out
