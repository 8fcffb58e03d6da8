"""Contrast agent table and the T1w signal model (SPGR, MPRAGE) with a gadolinium agent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from GadoReduceLib.physics import agents, signal as physics
from GadoReduceLib.physics.agents import AGENTS, DEFAULT_AGENT, agent_from_dicom, get_agent, native_t1
from GadoReduceLib.physics.signal import Sequence


# ---------------------------------------------------------------- agents

def test_agent_table_values_from_the_issue():
    expected = {"gadoterate": (3.9, 3.4), "gadobutrol": (4.6, 4.5), "gadoteridol": (4.4, 3.5),
                "gadobenate": (6.2, 5.4), "gadoxetate": (7.2, 5.5), "gadopiclenol": (12.8, 11.6)}
    assert set(expected) <= set(AGENTS)
    for name, (r15, r30) in expected.items():
        agent = AGENTS[name]
        assert agent.relaxivity(1.5) == pytest.approx(r15)
        assert agent.relaxivity(3.0) == pytest.approx(r30)
    assert DEFAULT_AGENT in AGENTS
    assert AGENTS["gadopiclenol"].standard_dose_mmol_per_kg == 0.05
    assert AGENTS["gadobutrol"].standard_dose_ml_per_kg == pytest.approx(0.1)   # 1.0 M vial
    assert AGENTS["gadoterate"].standard_dose_ml_per_kg == pytest.approx(0.2)   # 0.5 M vial
    assert AGENTS["gadopiclenol"].standard_dose_ml_per_kg == pytest.approx(0.1)


def test_relaxivity_interpolates_and_rejects_other_fields():
    agent = AGENTS["gadoterate"]
    assert agent.relaxivity(2.25) == pytest.approx((3.9 + 3.4) / 2)
    assert agent.relaxivity(1.0) > agent.relaxivity(1.5) > agent.relaxivity(3.0) > agent.relaxivity(3.5)
    for bad in (0.5, 7.0, 1500, -3):
        with pytest.raises(ValueError, match="field strength"):
            agent.relaxivity(bad)


@pytest.mark.parametrize("spelling,name", [
    ("Gd-DOTA", "gadoterate"), ("Dotarem", "gadoterate"), ("clariscan", "gadoterate"),
    ("Gadovist", "gadobutrol"), ("GADAVIST", "gadobutrol"), ("MultiHance", "gadobenate"),
    ("ProHance", "gadoteridol"), ("Primovist", "gadoxetate"), ("Eovist", "gadoxetate"),
    ("Elucirem", "gadopiclenol"), ("Vueway", "gadopiclenol"), ("gd dota", "gadoterate"),
    ("Gadobutrol", "gadobutrol")])
def test_get_agent_names_brands_aliases(spelling, name):
    assert get_agent(spelling).name == name


def test_get_agent_unknown_lists_known():
    with pytest.raises(ValueError, match="known agents:.*gadobutrol"):
        get_agent("water")
    with pytest.raises(ValueError):
        get_agent("")


def test_agent_from_dicom_free_text():
    assert agent_from_dicom("GADOVIST 1.0").name == "gadobutrol"
    assert agent_from_dicom("Dotarem 0.5 mmol/ml").name == "gadoterate"
    assert agent_from_dicom("15 ml ProHance i.v.").name == "gadoteridol"
    assert agent_from_dicom("Gd-EOB-DTPA").name == "gadoxetate"
    assert agent_from_dicom("") is None
    assert agent_from_dicom("contrast") is None
    assert agent_from_dicom("NaCl 0.9%") is None


def test_tissue_tables_complete_and_ordered():
    required = {"white_matter", "grey_matter", "csf", "blood", "fat", "muscle", "skull", "dura", "lesion",
                "necrosis", "edema"}
    assert required <= set(agents.TISSUES)
    for table in (agents.NATIVE_T1_S, agents.T2STAR_S):
        assert set(agents.TISSUES) == set(table)
        assert all(set(v) == {1.5, 3.0} and min(v.values()) > 0 for v in table.values())
    assert set(agents.TISSUES) == set(agents.PROTON_DENSITY)
    assert set(agents.TISSUES) == set(physics.STANDARD_DOSE_TISSUE_CONCENTRATION_MM)
    assert native_t1("white_matter", 1.5) == pytest.approx(0.88, abs=0.01)
    assert native_t1("white_matter", 3.0) == pytest.approx(1.08, abs=0.01)
    assert native_t1("grey_matter", 1.5) == pytest.approx(1.12, abs=0.01)
    assert native_t1("grey_matter", 3.0) == pytest.approx(1.82, abs=0.01)
    assert native_t1("csf", 3.0) == pytest.approx(4.2, abs=0.2)
    # T1 lengthens with field for brain tissue; fat shortest, CSF longest.
    for t in ("white_matter", "grey_matter", "blood"):
        assert native_t1(t, 3.0) > native_t1(t, 1.5)
    assert native_t1("fat", 3.0) < native_t1("white_matter", 3.0) < native_t1("csf", 3.0)
    conc = physics.STANDARD_DOSE_TISSUE_CONCENTRATION_MM
    assert conc["blood"] > conc["lesion"] > 10 * conc["white_matter"]   # intact BBB: ~0 in normal brain
    with pytest.raises(ValueError, match="unknown tissue"):
        native_t1("liver", 3.0)


# ---------------------------------------------------------------- signal model

def test_spgr_equals_hand_computed_values():
    # flip 30 deg, TR 100 ms, R1 = 2/s: E1 = exp(-0.2) = 0.81873075,
    # S = 0.5 * 0.18126925 / (1 - 0.86602540 * 0.81873075) = 0.09063462 / 0.29095775 = 0.31150375
    seq = Sequence("spgr", tr_s=0.1, te_s=0.01, flip_deg=30.0)
    assert physics.spgr_signal(1.0, 2.0, seq) == pytest.approx(0.31150375, rel=1e-7)
    # with T2* = 50 ms: * exp(-0.01/0.05) = 0.81873075 -> 0.25503770; M0 scales linearly
    assert physics.spgr_signal(1.0, 2.0, seq, t2star_s=0.05) == pytest.approx(0.25503770, rel=1e-7)
    assert physics.spgr_signal(3.0, 2.0, seq) == pytest.approx(3 * 0.31150375, rel=1e-7)
    # 90 deg: S = 1 - exp(-TR R1) = 1 - exp(-0.01) = 0.00995017
    seq90 = Sequence("spgr", tr_s=0.01, te_s=0.0, flip_deg=90.0)
    assert physics.spgr_signal(1.0, 1.0, seq90) == pytest.approx(0.00995017, rel=1e-6)
    # R1 = R1,0 + r1 C: T1 1 s, r1 4.5, 0.2 mM -> 1 + 0.9 = 1.9 /s; broadcasting over arrays
    np.testing.assert_allclose(physics.r1_with_agent(np.array([1.0, 0.5]), 4.5, 0.2), [1.9, 2.9])
    out = physics.signal(np.ones((2, 1)), np.array([1.0, 2.0, 3.0]), seq)
    assert out.shape == (2, 3) and np.all(np.diff(out, axis=1) > 0)


def test_mprage_closed_form_matches_explicit_simulation():
    seq = Sequence("mprage", tr_s=0.007, te_s=0.003, flip_deg=9.0, ti_s=0.9, shot_tr_s=2.3, n_readouts=176)
    a = math.radians(9.0)
    for t1 in (0.4, 1.0, 1.8, 4.2):
        r1 = 1.0 / t1
        ta = 0.9 - 88 * 0.007
        td = 2.3 - ta - 176 * 0.007
        m = 1.0
        for _shot in range(40):       # run shots until the magnetization is periodic
            m = -m
            m = 1 - (1 - m) * math.exp(-ta * r1)
            samples = []
            for _k in range(176):
                samples.append(math.sin(a) * m)
                m = m * math.cos(a)
                m = 1 - (1 - m) * math.exp(-0.007 * r1)
            m = 1 - (1 - m) * math.exp(-td * r1)
        expected = samples[88]
        got = physics.mprage_signal(1.0, r1, seq, signed=True)
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-9)
        assert physics.mprage_signal(1.0, r1, seq) == pytest.approx(abs(expected), rel=1e-6, abs=1e-9)
    # CSF is close to the inversion null: much darker than white matter
    assert abs(physics.mprage_signal(1.0, 1 / 4.2, seq, signed=True)) < 0.3 * physics.mprage_signal(1.0, 1 / 1.08, seq)


@pytest.mark.parametrize("field_strength", [1.5, 3.0])
@pytest.mark.parametrize("kind", ["spgr", "mprage"])
def test_enhancement_monotone_and_not_proportional_to_dose(field_strength, kind):
    seq = physics.default_sequence(field_strength, kind)
    agent = get_agent(DEFAULT_AGENT)
    c_std = physics.STANDARD_DOSE_TISSUE_CONCENTRATION_MM["lesion"]
    t1 = native_t1("lesion", field_strength)
    doses = np.array([0.1, 0.33, 1.0])
    enh = physics.relative_enhancement(t1, agent, field_strength, physics.concentration_at_dose(c_std, doses), seq)
    assert np.all(enh > 0) and np.all(np.diff(enh) > 0)              # monotone in dose
    fraction = enh / enh[-1]
    # saturation: a fraction of the dose gives MORE than that fraction of the enhancement
    assert fraction[0] > 0.1 * 1.05 and fraction[1] > 0.33 * 1.05
    assert fraction[1] < 0.6
    # C proportional to dose, R1 linear in C, but the signal is not linear in R1
    assert physics.concentration_at_dose(0.25, 0.33) == pytest.approx(0.0825)


def test_higher_relaxivity_and_field_effects():
    c = 0.1
    seq = physics.default_sequence(3.0)
    t1 = native_t1("lesion", 3.0)
    e_butrol = physics.relative_enhancement(t1, get_agent("gadobutrol"), 3.0, c, seq)
    e_piclenol = physics.relative_enhancement(t1, get_agent("gadopiclenol"), 3.0, c, seq)
    assert e_piclenol > 2 * e_butrol


def test_tissue_signal_contrast_of_t1w_brain():
    for b in (1.5, 3.0):
        for kind in ("spgr", "mprage"):
            seq = physics.default_sequence(b, kind)
            s = {t: float(physics.tissue_signal(t, b, None, 0.0, seq)) for t in agents.TISSUES}
            assert s["fat"] > s["white_matter"] > s["grey_matter"] > s["csf"]       # T1 weighting
            assert s["edema"] < s["white_matter"] and s["necrosis"] < s["grey_matter"]
            assert s["skull"] < 0.05 * s["white_matter"]                            # very short T2*
            agent = get_agent("gadobutrol")
            vessels = physics.tissue_signal("blood", b, agent, 0.5, seq)
            assert vessels > 1.5 * s["blood"]


@pytest.mark.parametrize("kind", ["spgr", "mprage"])
def test_r1_from_signal_ratio_inverts_the_model(kind):
    seq = physics.default_sequence(3.0, kind)
    r1_pre = np.array([1 / 1.08, 1 / 1.75, 1 / 0.9, 1 / 1.4])
    r1_true = r1_pre + np.array([0.0, 1.0, 0.2, 3.0])
    ratio = physics.signal(1.0, r1_true, seq) / physics.signal(1.0, r1_pre, seq)
    np.testing.assert_allclose(physics.r1_from_signal_ratio(ratio, r1_pre, seq), r1_true, rtol=1e-6)
    if kind == "spgr":   # impossible ratios are clipped to the documented range, NaN stays NaN
        r = physics.r1_from_signal_ratio(np.array([1e6, -1.0, np.nan]), 1.0, seq)
        assert r[0] == physics.R1_RANGE_PER_S[1] and r[1] == physics.R1_RANGE_PER_S[0] and np.isnan(r[2])


def test_sequences_and_bad_inputs():
    s3, s15 = physics.default_sequence(3.0), physics.default_sequence(1.5)
    assert (s3.kind, s3.tr_s, s3.te_s) == ("spgr", 0.008, 0.003)
    assert s15.tr_s > s3.tr_s
    assert physics.default_sequence(3.0, "mprage").ti_s == pytest.approx(0.9)
    with pytest.raises(ValueError, match="sequence kind"):
        physics.default_sequence(3.0, "flair")
    with pytest.raises(ValueError, match="field strength"):
        physics.default_sequence(30)
    with pytest.raises(ValueError, match="seconds"):
        Sequence("spgr", tr_s=-8, te_s=3, flip_deg=12)
    with pytest.raises(ValueError, match="inversion time"):
        Sequence("mprage", tr_s=0.007, te_s=0.003, flip_deg=9)
    with pytest.raises(ValueError, match="does not fit"):
        Sequence("mprage", tr_s=0.007, te_s=0.003, flip_deg=9, ti_s=0.3, shot_tr_s=1.0, n_readouts=176)
    with pytest.raises(ValueError, match="T1"):
        physics.r1_with_agent(0.0, 4.5, 0.1)
    with pytest.raises(ValueError, match="dose"):
        physics.concentration_at_dose(0.25, -0.5)
