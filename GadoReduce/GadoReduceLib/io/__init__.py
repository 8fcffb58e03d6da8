"""Input and output: images with their geometry (NIfTI, NRRD, MetaImage, DICOM), MRML conversion, working grids,
resources, previews and atomic writes.

Submodules are imported on demand, so that importing the package stays cheap.
"""
