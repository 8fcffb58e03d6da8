"""Slicer-module support outside the computation: DICOM prefill of the acquisition fields, the decision
which Python packages to install (and installing them inside Slicer), and the phantom sample data.

``slicer`` is imported lazily: this file imports without Slicer. Research software, not for diagnosis.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from ..physics.agents import agent_from_dicom


# ------------------------------------------------------------------------------ DICOM prefill

TAG_FIELD_STRENGTH, TAG_AGENT, TAG_VOLUME, TAG_WEIGHT = "0018,0087", "0018,0010", "0018,1041", "0010,1030"


def _number(text) -> float | None:
    try:
        value = float(str(text).strip().split("\\")[0])
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def acquisition_from_tags(read) -> dict:
    """Acquisition fields from DICOM tags; ``read(tag)`` returns the text of a tag ("0018,0087") or "".

    Returns a dict with the keys found: ``field_strength`` (tesla; values above 100 are taken as gauss),
    ``agent`` (generic name, from 0018,0010 via ``agents.agent_from_dicom``), ``contrast_volume_ml``,
    ``weight_kg`` and, when agent, volume and weight are all known, ``dose`` = volume / (weight x the
    agent's standard dose in mL/kg), the fraction of the standard dose (not clipped; check it).
    """
    out = {}
    field = _number(read(TAG_FIELD_STRENGTH))
    if field is not None:
        out["field_strength"] = field / 10000.0 if field > 100 else field
    agent = agent_from_dicom(read(TAG_AGENT) or "")
    if agent is not None:
        out["agent"] = agent.name
    volume, weight = _number(read(TAG_VOLUME)), _number(read(TAG_WEIGHT))
    if volume is not None:
        out["contrast_volume_ml"] = volume
    if weight is not None:
        out["weight_kg"] = weight
    if agent is not None and volume is not None and weight is not None:
        out["dose"] = volume / (weight * agent.standard_dose_ml_per_kg)
    return out


def acquisition_from_volume_node(volume_node) -> dict:
    """:func:`acquisition_from_tags` of the first instance of a volume node loaded from DICOM (its
    "DICOM.instanceUIDs" attribute, read through ``slicer.dicomDatabase``); {} for other volumes."""
    import slicer
    uids = (volume_node.GetAttribute("DICOM.instanceUIDs") or "").split() if volume_node else []
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return {}
    path = database.fileForInstance(uids[0])
    return acquisition_from_tags(lambda tag: database.fileValue(path, tag) or "") if path else {}


def acquisition_from_dicom_file(path: str | os.PathLike) -> dict:
    """:func:`acquisition_from_tags` of one DICOM file, read with SimpleITK (GDCM)."""
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOn()
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise ValueError(f"{path} is not a readable DICOM file ({str(error).splitlines()[0]}).") from None

    def read(tag: str) -> str:
        key = tag.replace(",", "|").lower()
        return reader.GetMetaData(key) if reader.HasMetaDataKey(key) else ""
    return acquisition_from_tags(read)


# ------------------------------------------------------------------------------ dependencies

PIP_REQUIREMENTS = {"scipy": "scipy==1.17.1", "skimage": "scikit-image==0.26.0", "itk": "itk-elastix==0.25.4"}
"""Import name -> pinned requirement (the pins of pyproject.toml) the module installs when missing."""


def missing_imports(names=("torch", "scipy", "skimage", "itk")) -> set[str]:
    return {name for name in names if importlib.util.find_spec(name) is None}


def dependency_plan(missing: set[str], slicer_elastix: bool, has_pip_ensure: bool) -> dict:
    """What :meth:`GadoReduceLogic.ensureDependencies` does for the ``missing`` import names.

    ``torch`` is installed by the PyTorch extension (``PyTorchUtilsLogic().installTorch``), never by pip;
    itk-elastix only when SlicerElastix is absent (registration then runs in-process); the other
    packages with ``pip_ensure`` (:func:`pip_ensure_module`) or else ``slicer.util.pip_install``.
    Returns {"torch": bool, "pip": [requirements], "installer": "pip_ensure" | "pip_install" | None}.
    """
    pip = [PIP_REQUIREMENTS[name] for name in sorted(missing)
           if name in PIP_REQUIREMENTS and not (name == "itk" and slicer_elastix)]
    return {"torch": "torch" in missing, "pip": pip,
            "installer": (("pip_ensure" if has_pip_ensure else "pip_install") if pip else None)}


def pip_ensure_module():
    """Slicer's module with ``pip_ensure`` (``slicer.pydeps``, Slicer >= 5.11; ``slicer.packaging`` in some
    builds), None in older Slicer versions (then ``slicer.util.pip_install`` is used)."""
    import importlib
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module
    return None


def ensure_dependencies(ask_confirmation: bool = True) -> bool:
    """Inside Slicer: install what :func:`dependency_plan` says for the missing imports; see
    ``GadoReduceLogic.ensureDependencies``."""
    import slicer
    missing = missing_imports()
    if not missing:
        return True
    installer = pip_ensure_module()
    plan = dependency_plan(missing, slicer_elastix=hasattr(slicer.modules, "elastix"),
                           has_pip_ensure=installer is not None)
    if plan["torch"]:
        try:
            import PyTorchUtils
        except ImportError:
            raise ValueError("PyTorch is missing: install the PyTorch extension from the Extensions Manager, "
                             "restart Slicer and apply again.") from None
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=ask_confirmation) is None:
            return False
    if plan["pip"]:
        if ask_confirmation and not slicer.util.confirmOkCancelDisplay(
                f"GadoReduce needs these Python packages: {', '.join(plan['pip'])}. Install them now?"):
            return False
        if plan["installer"] == "pip_ensure":
            from packaging.requirements import Requirement
            installer.pip_ensure([Requirement(r) for r in plan["pip"]], requester="GadoReduce")
        else:
            slicer.util.pip_install(plan["pip"])
    if missing_imports():
        slicer.util.infoDisplay("GadoReduce installed Python packages; please restart Slicer and apply again.")
        return False
    return True


# ------------------------------------------------------------------------------ sample data

SAMPLE_NAME = "GadoReduce phantom"
SAMPLE_SCANS = (("pre_contrast", "GadoReduce phantom pre-contrast"), ("low_dose_33", "GadoReduce phantom low dose 33%"),
                ("standard_dose", "GadoReduce phantom standard dose"))
SAMPLE_LESIONS = "GadoReduce phantom lesions (truth)"
SAMPLE_SEED = 1


def sample_phantom_case(seed: int = SAMPLE_SEED):
    """The sample phantom (``phantom.PhantomCase``): 1 mm, the shipped model's voxel size, 33 % low dose,
    generated locally (no network, about 10-20 s). A synthetic case: no clinical evidence."""
    from ..phantom.generate import PhantomConfig, generate_phantom
    return generate_phantom(PhantomConfig(seed=seed, doses=(0.33,), size="full"))


def sample_phantom_nodes(scene, case=None) -> list:
    """Add the sample phantom (``case``, default :func:`sample_phantom_case`) to ``scene``: pre-contrast,
    33 % low dose and standard dose volume nodes (SAMPLE_SCANS order) and its true lesions as a segmentation
    (one segment per lesion, named by type); returns the four nodes."""
    from ..io.mrml import volume_node_from_image
    from .outputs import segmentation_node_from_labels
    case = case if case is not None else sample_phantom_case()
    images = {"pre_contrast": case.pre_contrast, "low_dose_33": case.low_dose[0.33],
              "standard_dose": case.standard_dose}
    nodes = [volume_node_from_image(scene, images[key], name) for key, name in SAMPLE_SCANS]
    names = {lesion["label"]: f"lesion {lesion['label']} ({lesion['type'].replace('_', '-')})"
             for lesion in case.parameters["lesions"]}
    nodes.append(segmentation_node_from_labels(scene, case.lesion_labels, SAMPLE_LESIONS, nodes[0], names))
    return nodes


def load_sample_phantom(source=None) -> list:
    """SampleData loader (``customDownloader``): :func:`sample_phantom_nodes` into ``slicer.mrmlScene``."""
    import slicer
    return sample_phantom_nodes(slicer.mrmlScene)


def register_sample_data(thumbnail: str) -> None:
    """Register the "GadoReduce phantom" sample (generated locally, no network) with the SampleData module
    (a log line instead when Slicer has no SampleData module)."""
    try:
        import SampleData
    except ImportError:  # e.g. a custom Slicer build
        import logging
        logging.info("GadoReduce: SampleData module not found; the phantom sample is not registered.")
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="GadoReduce", sampleName=SAMPLE_NAME, thumbnailFileName=thumbnail,
        customDownloader=load_sample_phantom)
