"""GadoReduceLib: the core of GadoReduce, importable without 3D Slicer.

Gadolinium dose reduction for brain MRI after Pinetz, Kobler et al. (2024): from a
pre-contrast T1w scan and a low-dose contrast-enhanced T1w scan, predict the contrast
signal a standard dose would give. Research software, not for diagnosis.

Submodules are imported on demand (``from GadoReduceLib import imageio``) so that
importing the package stays cheap inside Slicer.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "GadoReduce is research software. It is not a medical device and must not be used "
    "for diagnosis or treatment decisions."
)
