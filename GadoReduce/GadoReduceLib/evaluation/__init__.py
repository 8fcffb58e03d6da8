"""Evaluation: baselines, every metric per case and dose, reports and figures.

Submodules are imported on demand, so that importing the package stays cheap.
"""
