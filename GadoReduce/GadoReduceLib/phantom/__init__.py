"""The digital phantom with known truth: anatomy from the MNI atlas, lesions, signal and noise.

Submodules are imported on demand, so that importing the package stays cheap.
"""
