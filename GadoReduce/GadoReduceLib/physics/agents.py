"""Facts about gadolinium contrast agents and tissues: the one place every module reads them from.

Units: relaxivity r1 in L/(mmol s) (= 1/(mM s)), concentrations in mmol/mL (the vial) or mM
(= mmol/L, in tissue), doses in mmol/kg body weight, relaxation times in seconds, field strength in tesla.

Sources (values rounded as used here):
- r1 of gadoterate, gadobutrol, gadoteridol, gadobenate, gadoxetate in human whole blood at 37 degC,
  1.5 T and 3 T: Shen Y et al., Invest Radiol 2015;50(5):330-338 ("T1 relaxivities of gadolinium-based
  MR contrast agents in human whole blood at 1.5, 3, and 7 T").
- gadopiclenol: Robic C et al., Invest Radiol 2019;54(8):475-484 (r1 12.8 at 1.41 T and 11.6 at 3 T,
  human serum); standard dose 0.05 mmol/kg (EMA/FDA labels of Elucirem/Vueway).
- vial concentrations and standard doses: the products' labels (0.1 mmol/kg for brain imaging,
  gadoxetate 0.025 mmol/kg, a liver agent included because it appears in DICOM headers).
- native T1 of white/grey matter, blood and skeletal muscle: Stanisz GJ et al., Magn Reson Med
  2005;54:507-512 (1.5 T and 3 T); CSF: about 4.2-4.4 s at both fields (Rooney WD et al., Magn Reson
  Med 2007;57:308-318; Lu H et al., JMRI 2005;22:13-22); subcutaneous fat: de Bazelaire CM et al.,
  Radiology 2004;230:652-659; cortical bone (UTE): Du J et al., Magn Reson Med 2010/2011 and Horch RA et
  al., Magn Reson Med 2010. Tumour, necrosis, oedema, dura and choroid plexus values are APPROXIMATIONS
  of the literature order of magnitude (glioma/metastasis T1 mapping studies report enhancing tumour
  and oedema T1 longer than white matter, necrosis close to fluid) chosen for a phantom, not measured.
- T2*: Peters AM et al., Magn Reson Imaging 2007;25:748-753 (3 T brain: white matter ~53 ms, grey
  matter ~66 ms); 1.5 T values set ~1.3x longer (T2* shortens roughly with field); bone ~0.5 ms (UTE
  studies above). Other tissues are approximations; with TE ~3 ms only bone is affected noticeably.
- proton density (relative to CSF = 1): water content of brain tissue (white matter ~0.70, grey matter
  ~0.80; e.g. Neeb H et al., NeuroImage 2006;31:1156-1168); the rest are approximations in the spirit of
  the BrainWeb phantom (Collins DL et al., IEEE TMI 1998).
- tissue Gd concentration at standard dose: see STANDARD_DOSE_TISSUE_CONCENTRATION_MM (approximate).

Research software, not for diagnosis: these are textbook-level values for simulation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FIELD_STRENGTH_RANGE_T = (1.0, 3.5)
"""Field strengths (tesla) for which relaxivities and native T1 are interpolated/extrapolated from the
1.5 T and 3 T values; outside this range the tables do not apply."""


@dataclass(frozen=True)
class ContrastAgent:
    """A gadolinium-based contrast agent.

    name: generic name, lowercase ("gadobutrol"); brand_names / aliases: spellings seen in the DICOM
    Contrast/Bolus Agent attribute (0018,0010); concentration_mmol_per_ml: vial concentration;
    standard_dose_mmol_per_kg: standard (full) dose for brain imaging; r1_1p5t / r1_3t: longitudinal
    relaxivity in L/(mmol s) at 1.5 T and 3 T.
    """

    name: str
    brand_names: tuple[str, ...]
    aliases: tuple[str, ...]
    concentration_mmol_per_ml: float
    standard_dose_mmol_per_kg: float
    r1_1p5t: float
    r1_3t: float

    @property
    def standard_dose_ml_per_kg(self) -> float:
        """Injected volume of the standard dose in mL per kg body weight."""
        return self.standard_dose_mmol_per_kg / self.concentration_mmol_per_ml

    def relaxivity(self, field_strength: float) -> float:
        """r1 in L/(mmol s) at ``field_strength`` tesla: linear in B through the 1.5 T and 3 T values
        (extrapolated linearly by at most 0.5 T, i.e. valid for 1.0-3.5 T)."""
        return _interpolate_field({1.5: self.r1_1p5t, 3.0: self.r1_3t}, field_strength, f"r1 of {self.name}")


def check_field_strength(field_strength: float, what: str = "the tables") -> float:
    """The field strength in tesla as a float; ValueError naming the fix outside ``FIELD_STRENGTH_RANGE_T``."""
    try:
        b = float(field_strength)
    except (TypeError, ValueError):
        raise ValueError(f"field strength must be a number in tesla, got {field_strength!r}") from None
    lo, hi = FIELD_STRENGTH_RANGE_T
    if not (lo <= b <= hi):
        raise ValueError(f"field strength {b:g} T is outside the supported range {lo:g}-{hi:g} T for {what} "
                         "(relaxivities and T1 values are tabulated at 1.5 T and 3 T); "
                         "use 1.5 or 3 (tesla, not millitesla)")
    return b


def _interpolate_field(values: dict[float, float], field_strength: float, what: str) -> float:
    """Linear interpolation in field strength between the 1.5 T and 3 T entries of ``values``."""
    b = check_field_strength(field_strength, what)
    v15, v30 = values[1.5], values[3.0]
    return float(v15 + (v30 - v15) * (b - 1.5) / 1.5)


AGENTS: dict[str, ContrastAgent] = {
    agent.name: agent
    for agent in (
        ContrastAgent("gadoterate", ("Dotarem", "Clariscan", "Artirem", "Cyclolux"),
                      ("Gd-DOTA", "gadoterate meglumine", "gadoteric acid"), 0.5, 0.1, 3.9, 3.4),
        ContrastAgent("gadobutrol", ("Gadovist", "Gadavist"),
                      ("Gd-BT-DO3A", "Gd-DO3A-butrol"), 1.0, 0.1, 4.6, 4.5),
        ContrastAgent("gadoteridol", ("ProHance",), ("Gd-HP-DO3A",), 0.5, 0.1, 4.4, 3.5),
        ContrastAgent("gadobenate", ("MultiHance",),
                      ("Gd-BOPTA", "gadobenate dimeglumine", "gadobenic acid"), 0.5, 0.1, 6.2, 5.4),
        ContrastAgent("gadoxetate", ("Primovist", "Eovist"),
                      ("Gd-EOB-DTPA", "gadoxetate disodium", "gadoxetic acid"), 0.25, 0.025, 7.2, 5.5),
        ContrastAgent("gadopiclenol", ("Elucirem", "Vueway"), ("P03277",), 0.5, 0.05, 12.8, 11.6),
    )
}
DEFAULT_AGENT = "gadobutrol"


def _normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _spellings(agent: ContrastAgent) -> tuple[str, ...]:
    return (agent.name,) + agent.brand_names + agent.aliases


def get_agent(name: str) -> ContrastAgent:
    """The agent called ``name``: generic name, brand name or alias, case- and punctuation-insensitive
    ("Gd-DOTA", "gd dota", "Dotarem", "GADAVIST"). ValueError listing the known agents otherwise."""
    if isinstance(name, ContrastAgent):
        return name
    key = _normalize(name)
    if key:
        for agent in AGENTS.values():
            if key in {_normalize(s) for s in _spellings(agent)}:
                return agent
    known = ", ".join(f"{a.name} ({'/'.join(a.brand_names)})" for a in AGENTS.values())
    raise ValueError(f"unknown contrast agent {name!r}; known agents: {known}")


def agent_from_dicom(text: str) -> ContrastAgent | None:
    """The agent named in free text of DICOM Contrast/Bolus Agent (0018,0010), e.g. "GADOVIST 1.0",
    "Dotarem 0.5 mmol/ml", "10 ml ProHance"; None when no known agent is mentioned (or text is empty)."""
    if not text:
        return None
    words = _normalize(text)
    # Longest spelling first so that "gadoxetate" is not mistaken for a shorter match.
    candidates = sorted(((_normalize(s), a) for a in AGENTS.values() for s in _spellings(a)),
                        key=lambda item: -len(item[0]))
    for spelling, agent in candidates:
        if len(spelling) >= 4 and spelling in words:
            return agent
    return None


TISSUES: tuple[str, ...] = ("white_matter", "grey_matter", "csf", "blood", "fat", "muscle", "skull", "dura",
                            "choroid_plexus", "lesion", "necrosis", "edema")

# Native (pre-contrast) T1 in seconds at 1.5 T and 3 T; sources in the module docstring.
NATIVE_T1_S: dict[str, dict[float, float]] = {
    "white_matter": {1.5: 0.884, 3.0: 1.084},    # Stanisz 2005
    "grey_matter": {1.5: 1.124, 3.0: 1.820},     # Stanisz 2005
    "csf": {1.5: 4.2, 3.0: 4.2},                 # Rooney 2007, Lu 2005 (~4.2-4.4 s, field-independent)
    "blood": {1.5: 1.441, 3.0: 1.932},           # Stanisz 2005
    "fat": {1.5: 0.343, 3.0: 0.382},             # de Bazelaire 2004, subcutaneous fat (scalp, marrow)
    "muscle": {1.5: 1.008, 3.0: 1.412},          # Stanisz 2005, skeletal muscle
    "skull": {1.5: 0.20, 3.0: 0.25},             # cortical bone, UTE studies (Du 2010; Horch 2010), approx.
    "dura": {1.5: 0.90, 3.0: 1.10},              # approximation (collagen-rich fibrous tissue)
    "choroid_plexus": {1.5: 1.10, 3.0: 1.50},    # approximation (vascular, between GM and blood)
    "lesion": {1.5: 1.35, 3.0: 1.75},            # approximation: enhancing tumour, longer than WM
    "necrosis": {1.5: 2.30, 3.0: 2.80},          # approximation: fluid-like necrotic core
    "edema": {1.5: 1.45, 3.0: 1.95},             # approximation: vasogenic oedema (hypointense on T1w)
}

# T2* in seconds at 1.5 T and 3 T (see module docstring; approximations except WM/GM at 3 T and bone).
T2STAR_S: dict[str, dict[float, float]] = {
    "white_matter": {1.5: 0.070, 3.0: 0.053},    # Peters 2007 (3 T)
    "grey_matter": {1.5: 0.085, 3.0: 0.066},     # Peters 2007 (3 T)
    "csf": {1.5: 0.400, 3.0: 0.300},
    "blood": {1.5: 0.060, 3.0: 0.040},           # mixed arterial/venous, approx.
    "fat": {1.5: 0.045, 3.0: 0.035},
    "muscle": {1.5: 0.035, 3.0: 0.028},
    "skull": {1.5: 0.0006, 3.0: 0.0005},         # cortical bone ~0.4-0.5 ms (UTE): dark at TE ~3 ms
    "dura": {1.5: 0.012, 3.0: 0.010},            # collagen: short T2*, approx.
    "choroid_plexus": {1.5: 0.060, 3.0: 0.045},
    "lesion": {1.5: 0.070, 3.0: 0.055},
    "necrosis": {1.5: 0.150, 3.0: 0.120},
    "edema": {1.5: 0.090, 3.0: 0.070},
}

# Relative proton density M0 (CSF = 1); WM/GM from water content (Neeb 2006), others approximations.
PROTON_DENSITY: dict[str, float] = {
    "white_matter": 0.70, "grey_matter": 0.80, "csf": 1.00, "blood": 0.85, "fat": 0.90, "muscle": 0.80,
    "skull": 0.15, "dura": 0.70, "choroid_plexus": 0.80, "lesion": 0.85, "necrosis": 0.92, "edema": 0.85,
}

# Approximate Gd concentration (mM) in each compartment a few minutes after a STANDARD dose
# (0.1 mmol/kg, or the agent's standard dose). Literature-order values, not measurements:
# - blood: whole-blood concentration ~0.4-0.6 mM 2-5 min after 0.1 mmol/kg (plasma ~0.6-1 mM times
#   plasma fraction); vessels therefore enhance strongly;
# - lesion (enhancing tumour, BBB broken): extravascular-extracellular volume 0.2-0.5 times the plasma
#   concentration, ~0.2-0.3 mM (DCE-MRI studies of glioma/metastases);
# - dura and choroid plexus: no BBB, fenestrated capillaries, strong enhancement;
# - normal grey/white matter: intact BBB, only the intravascular part (CBV ~4 % / ~2 % of 0.5 mM), ~0;
# - CSF, necrosis: ~0 at imaging time; oedema: little (leaky surroundings), small value;
# - muscle, fat, bone marrow (skull): extracellular space without BBB, moderate/small.
STANDARD_DOSE_TISSUE_CONCENTRATION_MM: dict[str, float] = {
    "blood": 0.50, "lesion": 0.25, "dura": 0.20, "choroid_plexus": 0.30,
    "grey_matter": 0.02, "white_matter": 0.01, "csf": 0.0, "necrosis": 0.0, "edema": 0.03,
    "muscle": 0.08, "fat": 0.03, "skull": 0.02,
}


def _check_tissue(tissue: str, table: dict) -> None:
    if tissue not in table:
        raise ValueError(f"unknown tissue {tissue!r}; known tissues: {', '.join(table)}")


def native_t1(tissue: str, field_strength: float) -> float:
    """Native T1 in seconds of ``tissue`` (one of TISSUES) at ``field_strength`` tesla (1.0-3.5 T;
    linear in B through the 1.5 T and 3 T values)."""
    _check_tissue(tissue, NATIVE_T1_S)
    return _interpolate_field(NATIVE_T1_S[tissue], field_strength, f"T1 of {tissue}")


def t2star(tissue: str, field_strength: float) -> float:
    """T2* in seconds of ``tissue`` at ``field_strength`` tesla (linear in B, 1.0-3.5 T)."""
    _check_tissue(tissue, T2STAR_S)
    return _interpolate_field(T2STAR_S[tissue], field_strength, f"T2* of {tissue}")


def proton_density(tissue: str) -> float:
    """Relative proton density (M0, CSF = 1) of ``tissue``."""
    _check_tissue(tissue, PROTON_DENSITY)
    return PROTON_DENSITY[tissue]
