"""Optional input sequences (FLAIR, T2; papers 002/003) registered to the pre-contrast scan like the low dose.

Each sequence is registered rigidly to the pre-contrast scan with the same elastix parameter file and brain
mask as the post-contrast scans (Mattes mutual information, so different contrasts register), resampled onto
the working grid, divided by its own 95th brain percentile and set to 0 outside its field of view. There is no
subtraction and no noise statistics: the network reads the normalized image as one more input channel
(``model.network.ModelConfig.sequences``).
"""

from __future__ import annotations

import SimpleITK as sitk

from ..io.profiling import stage
from ..io.cases import SEQUENCES
from . import normalization
from .registration import register_in_brain

MIN_BRAIN_COVERAGE = 0.9
"""Below this fraction of the brain inside a registered sequence's field of view, QC warns."""


def check_sequences(sequences: dict | None) -> dict:
    """{key: image} of the given sequences (None entries dropped); ValueError for names not in SEQUENCES."""
    sequences = {k: v for k, v in (sequences or {}).items() if v is not None}
    unknown = sorted(set(sequences) - set(SEQUENCES))
    if unknown:
        raise ValueError(f"unknown input sequences {unknown}; GadoReduce takes {', '.join(SEQUENCES)}")
    return sequences


def register_sequence(image: sitk.Image, name: str, pre_native: sitk.Image, pre_work: sitk.Image,
                      mask_work: sitk.Image, registration_mask: sitk.Image, backend: str,
                      threads: int | None) -> tuple[sitk.Image, dict]:
    """(normalized registered sequence on the working grid (float32, 95th brain percentile = 1, 0 outside its
    field of view), its QC record) of one sequence ``name`` (a key of SEQUENCES)."""
    label = f"{SEQUENCES[name]} image"
    reg, coverage, valid, covered = register_in_brain(image, pre_native, pre_work, mask_work, registration_mask,
                                                      backend, threads)
    with stage("normalization"):
        if covered == 0:
            raise ValueError(f"The registered {label} covers none of the brain: check that it is of the same "
                             "patient and session as the pre-contrast scan and keeps its position information.")
        registered, q = normalization.percentile_normalize(reg.resampled, valid)
        registered = sitk.Cast(registered * sitk.Cast(coverage, sitk.sitkFloat32), sitk.sitkFloat32)
    qc = {"registration_backend": reg.backend, "registration_seconds": round(reg.seconds, 2),
          "registration_metric": reg.metric, "percentile_95": q, "brain_coverage": covered, "warnings": []}
    if covered < MIN_BRAIN_COVERAGE:
        qc["warnings"].append(f"The registered {label} covers only {100 * covered:.0f} % of the brain mask; the "
                              "network sees 0 in the uncovered brain.")
    return registered, qc
