"""What only the Slicer module needs (importable without Slicer where possible): parameter checks, MRML outputs,
dependency installs, DICOM prefill, sample data, the background job and its worker.

Submodules are imported on demand, so that importing the package stays cheap.
"""
