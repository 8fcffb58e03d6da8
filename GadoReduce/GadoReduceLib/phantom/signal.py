"""Signals of the digital phantom: noise-free partial-volume magnitudes and Rician noise (float32 [k, j, i])."""

from __future__ import annotations

import numpy as np

from ..physics.agents import STANDARD_DOSE_TISSUE_CONCENTRATION_MM, get_agent
from ..physics.signal import concentration_at_dose, tissue_signal

COMPARTMENT_TISSUE = {"non_enhancing": "lesion"}
"""Tissue (agents.TISSUES) whose relaxation a compartment uses when the names differ."""


def rician_noise(rng: np.random.Generator, magnitude: np.ndarray, sigma_map: np.ndarray) -> np.ndarray:
    """Rician magnitude |s + n_re + i n_im|, n ~ N(0, sigma_map^2) in each channel."""
    real = rng.standard_normal(magnitude.shape, dtype=np.float32)  # in place: no large temporaries
    real *= sigma_map
    real += magnitude
    real *= real
    imag = rng.standard_normal(magnitude.shape, dtype=np.float32)
    imag *= sigma_map
    imag *= imag
    real += imag
    return np.sqrt(real, out=real)


def compartment_signals(fractions: dict[str, np.ndarray], lesion_concentration: np.ndarray, dose: float,
                        config, sequence, scale: float, boxes: dict) -> np.ndarray:
    """Noise-free magnitude: partial-volume sum of each compartment's signal at ``dose`` (0 = native).

    config: a validated ``phantom.PhantomConfig``; scale: intensity scale of ``physics.tissue_signal``;
    boxes: compartment -> index box outside which its fraction is zero (compartments not listed: all)."""
    agent = get_agent(config.agent)
    total = np.zeros(next(iter(fractions.values())).shape, np.float32)
    term = np.empty_like(total)
    for compartment, fraction in fractions.items():
        box = boxes.get(compartment, (slice(None),) * 3)
        fraction, target = fraction[box], total[box]
        tissue = COMPARTMENT_TISSUE.get(compartment, compartment)
        if compartment == "lesion":
            standard = lesion_concentration
        elif compartment == "non_enhancing":
            standard = 0.0
        else:
            standard = STANDARD_DOSE_TISSUE_CONCENTRATION_MM[tissue]
        if np.ndim(standard):  # spatial concentration map: evaluate where the compartment is present
            where = fraction > 0
            s = tissue_signal(tissue, config.field_strength, agent,
                              concentration_at_dose(standard[box][where], dose), sequence)
            target[where] += fraction[where] * (s * scale).astype(np.float32)
        else:
            s = tissue_signal(tissue, config.field_strength, agent, concentration_at_dose(standard, dose), sequence)
            target += np.multiply(fraction, np.float32(s * scale), out=term[box])
    return total
