"""Inference (paper 001, section 3.4): the network on a preprocessed case, the reverted noise normalization,
and the enhancing regions with their statistics.

Submodules are imported on demand, so that importing the package stays cheap.
"""
