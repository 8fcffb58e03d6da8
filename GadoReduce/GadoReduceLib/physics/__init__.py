"""Physics of contrast-enhanced T1w MRI: the contrast-agent table (the one place for relaxivities and doses),
signal equations (SPGR/MPRAGE) and the synthetic low dose (paper 001, section 3.1 and the SLD protocol).

Submodules are imported on demand, so that importing the package stays cheap.
"""
