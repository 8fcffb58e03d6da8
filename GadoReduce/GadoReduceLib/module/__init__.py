"""What only the Slicer module needs (importable without Slicer where possible), one file per job: parameter
checks (``inputs``), MRML output nodes (``outputs``), the background job (``jobs``) and its worker (``worker``),
dependency installs (``install``), DICOM prefill (``dicom``) and the phantom sample data (``sample_data``).

Submodules are imported on demand, so that importing the package stays cheap.
"""
