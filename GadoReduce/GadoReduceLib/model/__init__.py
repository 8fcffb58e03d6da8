"""The conditional 3D U-Net (paper 001, section 3.3) and model files (checksums, cards).

Submodules are imported on demand, so that importing the package stays cheap.
"""
