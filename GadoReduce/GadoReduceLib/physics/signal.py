"""MR signal model of T1-weighted imaging with a gadolinium contrast agent.

- Relaxation with agent: R1 = R1,0 + r1 C  (R1 in 1/s, r1 in L/(mmol s), C in mM), C proportional to dose.
- Spoiled gradient echo (SPGR/FLASH/VIBE) steady state:
      S = M0 sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE / T2*),   E1 = exp(-TR R1).
- MPRAGE: closed-form steady state of an inversion-prepared train of SPGR readouts (Deichmann et al.,
  Magn Reson Med 2000; Marques et al., NeuroImage 2010 for the general recursion), see mprage_signal.

The signal saturates as R1 grows, so enhancement is NOT proportional to dose: a third of the dose gives
more than a third of the standard-dose enhancement. The effect of the agent on T2* is neglected (small at
the short TE of T1w imaging and brain-tissue concentrations). Arrays broadcast with numpy rules.
All facts about agents and tissues (relaxivities, native T1, T2*, M0, tissue concentrations) are read
from ``agents``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .agents import (STANDARD_DOSE_TISSUE_CONCENTRATION_MM, ContrastAgent, check_field_strength, native_t1,
                     proton_density, t2star)

__all__ = ["Sequence", "default_sequence", "r1_with_agent", "spgr_signal", "mprage_signal", "signal",
           "tissue_signal", "relative_enhancement", "r1_from_signal_ratio", "concentration_at_dose",
           "STANDARD_DOSE_TISSUE_CONCENTRATION_MM", "R1_RANGE_PER_S"]

R1_RANGE_PER_S = (1e-3, 200.0)
"""Bounds (1/s) to which R1 values recovered from signal ratios are clipped (T1 5 ms ... 1000 s)."""

MPRAGE_MIN_R1_PER_S = 0.1
"""Smallest R1 (1/s; T1 10 s, beyond CSF's ~4.3 s) recovered by the MPRAGE inversion."""

SEQUENCE_KINDS = ("spgr", "mprage")


@dataclass(frozen=True)
class Sequence:
    """Acquisition parameters of a T1-weighted sequence (times in seconds, flip angle in degrees).

    kind "spgr": tr_s is the repetition time. kind "mprage": tr_s is the echo spacing of the readout
    train, ti_s the inversion time to the centre of the train (centre of k-space), shot_tr_s the time
    between inversions and n_readouts the number of readouts per train (defaults 2.3 s and 176).
    """

    kind: str
    tr_s: float
    te_s: float
    flip_deg: float
    ti_s: float | None = None
    shot_tr_s: float | None = None
    n_readouts: int | None = None

    def __post_init__(self):
        if self.kind not in SEQUENCE_KINDS:
            raise ValueError(f"unknown sequence kind {self.kind!r}; use one of {', '.join(SEQUENCE_KINDS)}")
        if not (self.tr_s > 0 and self.te_s >= 0 and 0 < self.flip_deg <= 90):
            raise ValueError(f"invalid sequence timing TR={self.tr_s} s, TE={self.te_s} s, flip={self.flip_deg} deg "
                             "(need TR > 0 s, TE >= 0 s, 0 < flip <= 90 deg; times are in seconds)")
        if self.kind == "mprage":
            if self.ti_s is None or self.ti_s <= 0:
                raise ValueError("an MPRAGE sequence needs an inversion time ti_s > 0 (seconds)")
            ta, td = _mprage_delays(self)
            if ta < 0 or td < 0:
                raise ValueError(f"MPRAGE timing does not fit: TI={self.ti_s} s, shot TR={self.shot_tr} s, "
                                 f"{self.readouts} readouts of {self.tr_s} s; lengthen TI/shot TR or "
                                 "shorten the readout train")

    @property
    def flip_rad(self) -> float:
        return float(np.deg2rad(self.flip_deg))

    @property
    def shot_tr(self) -> float:
        return 2.3 if self.shot_tr_s is None else float(self.shot_tr_s)

    @property
    def readouts(self) -> int:
        return 176 if self.n_readouts is None else int(self.n_readouts)


def default_sequence(field_strength: float, kind: str = "spgr") -> Sequence:
    """Typical 3D T1w brain sequence at ``field_strength`` tesla (parameters of the nearer of 1.5 T / 3 T).

    spgr: 3 T TR 8 ms / TE 3 ms / 12 deg; 1.5 T TR 10 ms / TE 4 ms / 15 deg (post-contrast 3D spoiled GRE,
    flip above the Ernst angle of brain tissue for T1 weighting).
    mprage: 3 T echo spacing 7 ms / TE 3 ms / 9 deg / TI 900 ms / shot TR 2.3 s / 176 readouts;
    1.5 T 8.7 ms / 4 ms / 8 deg / TI 1000 ms / 2.4 s / 160 (ADNI-like protocols).
    """
    b = check_field_strength(field_strength)
    high = b >= 2.25
    if kind == "spgr":
        return Sequence("spgr", 0.008, 0.003, 12.0) if high else Sequence("spgr", 0.010, 0.004, 15.0)
    if kind == "mprage":
        if high:
            return Sequence("mprage", 0.007, 0.003, 9.0, ti_s=0.9, shot_tr_s=2.3, n_readouts=176)
        return Sequence("mprage", 0.0087, 0.004, 8.0, ti_s=1.0, shot_tr_s=2.4, n_readouts=160)
    raise ValueError(f"unknown sequence kind {kind!r}; use one of {', '.join(SEQUENCE_KINDS)}")


def r1_with_agent(t1_native_s, relaxivity, concentration_mM):
    """R1 (1/s) = 1/T1,native + r1 C. t1_native_s in s, relaxivity in L/(mmol s), concentration in mM."""
    t1 = np.asarray(t1_native_s, dtype=float)
    if np.any(t1 <= 0):
        raise ValueError("native T1 must be > 0 seconds")
    return 1.0 / t1 + np.asarray(relaxivity, dtype=float) * np.asarray(concentration_mM, dtype=float)


def _t2star_decay(te_s: float, t2star_s):
    if t2star_s is None:
        return 1.0
    t2s = np.asarray(t2star_s, dtype=float)
    if np.any(t2s <= 0):
        raise ValueError("T2* must be > 0 seconds")
    return np.exp(-te_s / t2s)


def _spgr_factor(r1, tr_s: float, flip_rad: float):
    """sin(a) (1 - E1) / (1 - cos(a) E1) for R1 = r1 (no M0, no T2*)."""
    e1 = np.exp(-tr_s * np.asarray(r1, dtype=float))
    return np.sin(flip_rad) * (1.0 - e1) / (1.0 - np.cos(flip_rad) * e1)


def spgr_signal(m0, r1, sequence: Sequence, t2star_s=None):
    """Steady-state spoiled gradient-echo signal M0 sin(a)(1-E1)/(1-cos(a)E1) exp(-TE/T2*), E1 = exp(-TR R1).

    m0: proton density (any units, the signal has the same); r1 in 1/s; t2star_s in s or None (no decay).
    """
    return np.asarray(m0, dtype=float) * _spgr_factor(r1, sequence.tr_s, sequence.flip_rad) \
        * _t2star_decay(sequence.te_s, t2star_s)


def _mprage_delays(sequence: Sequence) -> tuple[float, float]:
    """(TA, TD): inversion -> first readout, last readout -> next inversion, in seconds."""
    train = sequence.readouts * sequence.tr_s
    ta = sequence.ti_s - 0.5 * train
    td = sequence.shot_tr - ta - train
    return ta, td


def _mprage_signed(r1, sequence: Sequence):
    """Signed longitudinal magnetization sampled at the centre of the train, times sin(a) (M0 = 1)."""
    r1 = np.asarray(r1, dtype=float)
    a = sequence.flip_rad
    ta, td = _mprage_delays(sequence)
    n = sequence.readouts
    e = np.exp(-sequence.tr_s * r1)
    m_ss = (1.0 - e) / (1.0 - np.cos(a) * e)          # steady state inside the readout train
    decay = np.cos(a) * e                               # per-readout approach factor
    f_train = decay ** n
    ea, ed = np.exp(-ta * r1), np.exp(-td * r1)
    # Longitudinal magnetization just before the (perfect) inversion, in steady state over shots:
    # M_start = 1 - (1 + M_pre) EA ; M_end = M_ss + (M_start - M_ss) F ; M_pre = 1 - (1 - M_end) ED.
    m_pre = (1.0 - ed + ed * (m_ss * (1.0 - f_train) + f_train * (1.0 - ea))) / (1.0 + ed * f_train * ea)
    m_start = 1.0 - (1.0 + m_pre) * ea
    m_centre = m_ss + (m_start - m_ss) * decay ** (n // 2)
    return np.sin(a) * m_centre


def mprage_signal(m0, r1, sequence: Sequence, t2star_s=None, signed: bool = False):
    """MPRAGE signal at the centre of k-space (linear phase ordering), closed-form steady state.

    Perfect inversion every shot_tr_s; TI is measured from the inversion to the central readout; between
    readouts the magnetization follows the SPGR recursion M <- M cos(a) E + (1 - E), E = exp(-TR R1).
    Magnitude image by default (tissues with T1 beyond the null appear dark, like CSF); ``signed=True``
    returns the phase-sensitive value, which increases monotonically with R1.
    """
    if sequence.kind != "mprage":
        raise ValueError(f"mprage_signal needs an MPRAGE sequence, got kind {sequence.kind!r}")
    s = np.asarray(m0, dtype=float) * _mprage_signed(r1, sequence) * _t2star_decay(sequence.te_s, t2star_s)
    return s if signed else np.abs(s)


def signal(m0, r1, sequence: Sequence, t2star_s=None):
    """Signal of ``sequence`` (dispatch on sequence.kind: spgr_signal or mprage_signal, magnitude)."""
    if sequence.kind == "spgr":
        return spgr_signal(m0, r1, sequence, t2star_s=t2star_s)
    if sequence.kind == "mprage":
        return mprage_signal(m0, r1, sequence, t2star_s=t2star_s)
    raise ValueError(f"unknown sequence kind {sequence.kind!r}")


def tissue_signal(tissue: str, field_strength: float, agent: ContrastAgent | None, concentration_mM,
                  sequence: Sequence, m0=None):
    """Signal of a tabulated ``tissue`` (agents.TISSUES) with ``concentration_mM`` of ``agent`` (None or
    concentration 0: native). m0 defaults to the tissue's relative proton density; T2* from agents.T2STAR_S."""
    t1 = native_t1(tissue, field_strength)
    relax = 0.0 if agent is None else agent.relaxivity(field_strength)
    r1 = r1_with_agent(t1, relax, concentration_mM)
    m0 = proton_density(tissue) if m0 is None else m0
    return signal(m0, r1, sequence, t2star_s=t2star(tissue, field_strength))


def relative_enhancement(t1_native_s, agent: ContrastAgent, field_strength: float, concentration_mM,
                         sequence: Sequence):
    """(S_post - S_pre) / S_pre for native T1 ``t1_native_s`` (s) and ``concentration_mM`` of ``agent``.
    M0 and T2* cancel (the agent's T2* effect is neglected)."""
    relax = agent.relaxivity(field_strength)
    s_pre = signal(1.0, r1_with_agent(t1_native_s, relax, 0.0), sequence)
    s_post = signal(1.0, r1_with_agent(t1_native_s, relax, concentration_mM), sequence)
    return (s_post - s_pre) / s_pre


def _clip_r1(r1):
    lo, hi = R1_RANGE_PER_S
    return np.clip(r1, lo, hi)


def r1_from_signal_ratio(ratio, r1_pre, sequence: Sequence):
    """R1 (1/s) such that S(R1) / S(r1_pre) = ``ratio`` (same M0 and T2*): the inverse of the signal model.

    SPGR, closed form: with f(E) = (1 - E) / (1 - cos(a) E) and y = ratio f(E_pre),
    E = (1 - y) / (1 - y cos(a)) and R1 = -ln(E) / TR. f is at most 1 (R1 -> infinity), so ratios with
    y >= 1 (more enhancement than the model allows) and y <= 0 give R1 clipped to R1_RANGE_PER_S.
    MPRAGE: the signed signal (monotone in R1) is inverted on log R1 by table lookup plus Newton steps
    within MPRAGE_MIN_R1_PER_S .. R1_RANGE_PER_S[1] (below, T1 beyond 10 s, some protocols' signal is flat
    to rounding and not monotone);
    valid where the pre-contrast signal is positive (T1 shorter than the inversion null).
    Arrays broadcast; NaN in gives NaN out.
    """
    ratio = np.asarray(ratio, dtype=float)
    r1_pre = np.asarray(r1_pre, dtype=float)
    if sequence.kind == "spgr":
        a = sequence.flip_rad
        e_pre = np.exp(-sequence.tr_s * r1_pre)
        y = ratio * (1.0 - e_pre) / (1.0 - np.cos(a) * e_pre)
        lo_e, hi_e = np.exp(-sequence.tr_s * R1_RANGE_PER_S[1]), np.exp(-sequence.tr_s * R1_RANGE_PER_S[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            e = (1.0 - y) / (1.0 - y * np.cos(a))
        e = np.where(y >= 1.0, lo_e, np.where(y <= 0.0, hi_e, e))
        e = np.clip(e, lo_e, hi_e)
        r1 = -np.log(e) / sequence.tr_s
        return np.where(np.isnan(ratio) | np.isnan(r1_pre), np.nan, _clip_r1(r1))
    if sequence.kind == "mprage":
        target = np.broadcast_to(ratio * _mprage_signed(r1_pre, sequence), np.broadcast(ratio, r1_pre).shape)
        lo, hi = np.log(MPRAGE_MIN_R1_PER_S), np.log(R1_RANGE_PER_S[1])
        grid = np.linspace(lo, hi, 8192)
        table = _mprage_signed(np.exp(grid), sequence)
        if np.any(np.diff(table) <= 0):
            raise ValueError("this MPRAGE sequence's signal is not monotone in R1; it cannot be inverted")
        x = np.interp(target, table, grid)          # lookup on log R1, then Newton steps on log R1
        h = 1e-4
        for _ in range(3):
            f = _mprage_signed(np.exp(x), sequence) - target
            df = (_mprage_signed(np.exp(x + h), sequence) - _mprage_signed(np.exp(x - h), sequence)) / (2 * h)
            x = np.clip(x - np.where(df > 0, f / np.where(df > 0, df, 1.0), 0.0), lo, hi)
        return np.where(np.isnan(target), np.nan, np.exp(x))
    raise ValueError(f"unknown sequence kind {sequence.kind!r}")


def concentration_at_dose(concentration_standard_mM, dose):
    """Tissue concentration (mM) at ``dose`` (fraction of the standard dose, >= 0; 1 = standard dose):
    linear, C = dose * C_standard."""
    d = np.asarray(dose, dtype=float)
    if np.any(d < 0) or np.any(~np.isfinite(d)):
        raise ValueError(f"dose must be a fraction of the standard dose >= 0 (e.g. 0.33), got {dose!r}")
    return d * np.asarray(concentration_standard_mM, dtype=float)
