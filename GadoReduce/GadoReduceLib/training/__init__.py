"""Training (paper 001, section 3.4): training cases and their cache, patches and loss, the training loop.

Submodules are imported on demand, so that importing the package stays cheap.
"""
