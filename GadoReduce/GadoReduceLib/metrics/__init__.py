"""Evaluation metrics (paper 001, section 4; papers 002/003): PSNR, SSIM, relative enhancement, CNR/LBR/CEP,
overlap and lesion detection by size.

Submodules are imported on demand, so that importing the package stays cheap.
"""
