"""Preprocessing (paper 001, sections 3.1-3.2): registration, brain mask, intensity and radiometric
normalization, subtraction images, noise normalization and QC.

Submodules are imported on demand, so that importing the package stays cheap.
"""
