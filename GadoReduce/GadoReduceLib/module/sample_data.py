"""The Slicer module's sample data: a digital phantom generated locally (no network) with its true lesions.

Node names follow the case-folder file stems (``pre_contrast``, ``imageio.dose_name`` for the low dose,
``standard_dose``). ``slicer`` is imported lazily: this file imports without Slicer. A synthetic case: no
clinical evidence.
"""

from __future__ import annotations

from ..io.imageio import dose_name

SAMPLE_NAME = "GadoReduce phantom"
SAMPLE_DOSE = 0.33
"""Low dose of the sample phantom (fraction of the standard dose)."""
SAMPLE_SCANS = tuple((stem, f"{SAMPLE_NAME} {stem}") for stem in ("pre_contrast", dose_name(SAMPLE_DOSE),
                                                                  "standard_dose"))
"""(file stem, node name) of the sample's volumes: pre-contrast, low dose, standard dose."""
SAMPLE_LESIONS = "GadoReduce phantom lesions (truth)"
SAMPLE_SEED = 1


def sample_phantom_case(seed: int = SAMPLE_SEED):
    """The sample phantom (``phantom.PhantomCase``): 1 mm, the shipped model's voxel size, ``SAMPLE_DOSE`` low
    dose, generated locally (no network, about 10-20 s). A synthetic case: no clinical evidence."""
    from ..phantom.generate import PhantomConfig, generate_phantom
    return generate_phantom(PhantomConfig(seed=seed, doses=(SAMPLE_DOSE,), size="full"))


def sample_phantom_nodes(scene, case=None) -> list:
    """Add the sample phantom (``case``, default :func:`sample_phantom_case`) to ``scene``: pre-contrast,
    low dose and standard dose volume nodes (SAMPLE_SCANS order) and its true lesions as a segmentation
    (one segment per lesion, named by type); returns the four nodes."""
    from ..io.mrml import volume_node_from_image
    from .outputs import segmentation_node_from_labels
    case = case if case is not None else sample_phantom_case()
    images = {"pre_contrast": case.pre_contrast, dose_name(SAMPLE_DOSE): case.low_dose[SAMPLE_DOSE],
              "standard_dose": case.standard_dose}
    nodes = [volume_node_from_image(scene, images[stem], name) for stem, name in SAMPLE_SCANS]
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
    (a log line instead when Slicer has no SampleData module). Its button calls :func:`load_sample_phantom`;
    there is nothing to download, so ``uris``, ``fileNames`` and ``nodeNames`` are empty lists (SampleData's
    ``SampleDataSource`` needs lists). Sample Data calls a custom loader only from its button
    (``SampleDataLogic.downloadSample`` downloads the ``uris`` and would find none): from a script call
    ``GadoReduceLogic.loadSamplePhantom()``."""
    try:
        import SampleData
    except ImportError:  # e.g. a custom Slicer build
        import logging
        logging.info("GadoReduce: SampleData module not found; the phantom sample is not registered.")
        return
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="GadoReduce", sampleName=SAMPLE_NAME, uris=[], fileNames=[], nodeNames=[],
        thumbnailFileName=thumbnail, customDownloader=load_sample_phantom)
