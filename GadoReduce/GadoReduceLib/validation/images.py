"""Checks of the input files and images, before registration starts (see the package docstring).

:func:`read_inputs` reads every given input (``io.imageio.read_image``: present, readable, complete, not
corrupt, stored NaN/inf voxels kept) and runs ``preprocessing.preprocess.check_inputs`` (3D, scalar, finite,
not constant, size, spacing, overlap, not identical), each error prefixed with the input's option and path.
"""

from __future__ import annotations

from ..io.cases import SEQUENCES

INPUT_NAMES = {"pre_contrast": "pre-contrast image", "low_dose": "low-dose image",
               "standard_dose": "standard-dose image", "lesion_labels": "lesion segmentation",
               **{key: f"{name} image" for key, name in SEQUENCES.items()}}
"""Input keys and the words messages use for them (``preprocess.check_inputs``)."""


def _named(option: str | None, path, error: Exception) -> str:
    """The message prefixed with the input: ``--pre PATH: ...`` for a CLI option, ``LABEL: ...`` for any other
    label (the Slicer module's "'T1 pre' (preContrast)"), unchanged without one."""
    text = str(error)
    if option is None:
        return text
    if not option.startswith("--"):
        return f"{option}: {text}"
    return text if str(path) in text else f"{option} {path}: {text}"


def read_inputs(paths: dict, series: dict | None = None) -> dict:
    """Read and check the inputs of one case.

    paths: {key of :data:`INPUT_NAMES`: (label or None, path or None)}, e.g. {"pre_contrast": ("--pre", p)}; a
    label is the CLI option (then the path is named too) or any words naming the input (the module's node);
    ``series``: {key: Series Instance UID} for inputs that are DICOM folders of several series;
    returns {key: SimpleITK image or None}. ValueError naming the option, the file and the fix; nothing heavy
    (registration, the network) has run when it is raised."""
    from ..io.imageio import read_image
    from ..preprocessing.preprocess import check_inputs
    images, options = {}, {}
    for key, (option, path) in paths.items():
        options[key] = (option, path)
        if path is None:
            images[key] = None
            continue
        try:
            images[key] = read_image(path, (series or {}).get(key))
        except ValueError as error:
            raise type(error)(_named(option, path, error)) from None
    try:
        check_inputs(images["pre_contrast"], images.get("low_dose"), images.get("standard_dose"),
                     {key: images[key] for key in SEQUENCES if images.get(key) is not None})
    except ValueError as error:
        text = str(error)
        named = [(text.find(words), k) for k, words in INPUT_NAMES.items()
                 if words in text and options.get(k, (None, None))[1] is not None]
        key = min(named)[1] if named else "pre_contrast"  # the input the message is about comes first
        raise ValueError(_named(*options[key], error)) from None
    return images
