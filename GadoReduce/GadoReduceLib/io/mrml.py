"""MRML volume nodes <-> SimpleITK images and numpy arrays, with full geometry.

A volume node keeps its voxels in a vtkImageData (origin 0, spacing 1) and its geometry in
an IJK-to-RAS matrix; a SimpleITK image keeps LPS origin, spacing and direction. These
functions convert between the two without resampling: voxels are copied unchanged and the
geometry is carried over exactly (oblique directions, non-unit spacing, any origin).

Works with the real MRML classes of 3D Slicer or of the ``slicer-core`` package; slicer
and VTK are imported lazily so that the rest of GadoReduceLib does not need them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .imageio import Geometry, array_to_image, image_to_array

VOLUME_CLASSES = ("vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode")


def _vtk_matrix_to_numpy(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_vtk_matrix(array: np.ndarray):
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def _check_volume_node(node, name: str = "volume") -> None:
    if node is None:
        raise ValueError(f"No {name} was given. Select a volume node.")
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise ValueError(f"The {name} '{node.GetName()}' is a {node.GetClassName()}; GadoReduce needs a "
                         "scalar volume (vtkMRMLScalarVolumeNode or a label map).")
    image_data = node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise ValueError(f"The {name} '{node.GetName()}' has no voxels. Load the image again.")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"The {name} '{node.GetName()}' has {image_data.GetNumberOfScalarComponents()} "
                         "components per voxel; GadoReduce needs a scalar (grey-value) volume.")


def node_ijk_to_ras(node, world: bool = True) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix; with ``world``, including a linear parent transform."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    matrix = vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = _vtk_matrix_to_numpy(matrix)
    transform = node.GetParentTransformNode()
    if world and transform is not None:
        if not transform.IsTransformToWorldLinear():
            raise ValueError(
                f"The volume '{node.GetName()}' is under the non-linear transform '{transform.GetName()}'. "
                "Harden the transform first (Transforms module, 'Harden transform'), then run again.")
        to_world = vtkMatrix4x4()
        transform.GetMatrixTransformToWorld(to_world)
        ijk_to_ras = _vtk_matrix_to_numpy(to_world) @ ijk_to_ras
        axes = ijk_to_ras[:3, :3] / np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
        if not np.allclose(axes.T @ axes, np.eye(3), atol=1e-4):
            raise ValueError(
                f"The volume '{node.GetName()}' is under the transform '{transform.GetName()}', which shears "
                "it. Harden the transform with resampling (Transforms module), then run again.")
    return ijk_to_ras


def array_from_volume_node(node, world: bool = True) -> tuple[np.ndarray, Geometry]:
    """Copy of the node's voxels as an array ``[k, j, i]`` and its geometry (LPS)."""
    from vtkmodules.util.numpy_support import vtk_to_numpy
    _check_volume_node(node)
    image_data = node.GetImageData()
    size = image_data.GetDimensions()
    array = vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(tuple(reversed(size))).copy()
    return array, Geometry.from_ijk_to_ras(node_ijk_to_ras(node, world), size)


def image_from_volume_node(node, world: bool = True) -> sitk.Image:
    """SimpleITK image with the node's voxels and geometry (parent linear transform applied if ``world``)."""
    array, geometry = array_from_volume_node(node, world)
    return array_to_image(array, geometry)


def write_volume_node(node, path, world: bool = True):
    """Write the node's voxels and geometry to ``path`` (uncompressed; the format from the suffix) with MRML's
    volume archetype storage node, as Slicer saves a volume; with ``world`` the geometry includes a linear parent
    transform. The node is not changed: a proxy node outside the scene shares its voxels (no copy). Atomic and
    verified like ``imageio.write_image`` (OSError naming the file when it is not complete); returns the path."""
    import slicer
    from vtkmodules.util.numpy_support import vtk_to_numpy

    from .atomic import atomic_path
    from .integrity import verify_written_image
    _check_volume_node(node)
    path = Path(path)
    proxy = slicer.vtkMRMLScalarVolumeNode()
    proxy.SetIJKToRASMatrix(_numpy_to_vtk_matrix(node_ijk_to_ras(node, world)))
    proxy.SetAndObserveImageData(node.GetImageData())
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.UseCompressionOff()
    image_data = node.GetImageData()
    voxels = vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(tuple(reversed(image_data.GetDimensions())))
    scratch = path.parent / "TempWrite"  # MRML's writer works in this sub-folder and moves the file out of it
    scratch_existed = scratch.exists()
    try:
        with atomic_path(path) as tmp:
            storage.SetFileName(str(tmp))
            if not storage.WriteData(proxy):
                raise OSError(f"{path.name} could not be written from the volume '{node.GetName()}': the disk may be "
                              "full or not writable; free some space or set another temporary folder, then run again")
            verify_written_image(tmp, voxels, path.name)
    finally:
        if not scratch_existed and scratch.is_dir():
            shutil.rmtree(scratch, ignore_errors=True)
    return path


def update_volume_node_from_array(node, array: np.ndarray, geometry: Geometry) -> None:
    """Replace the node's voxels and geometry; the node keeps its name, display and storage nodes."""
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    array = np.asarray(array)
    if array.shape != tuple(reversed(geometry.size)):
        raise ValueError(f"Array of shape {array.shape} does not fit a grid of size (i, j, k) = {geometry.size}.")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    image_data = vtkImageData()
    image_data.SetDimensions(*geometry.size)
    scalars = numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True)
    scalars.SetName("ImageScalars")
    image_data.GetPointData().SetScalars(scalars)
    was_modifying = node.StartModify()
    node.SetIJKToRASMatrix(_numpy_to_vtk_matrix(geometry.ijk_to_ras()))
    node.SetAndObserveImageData(image_data)
    node.EndModify(was_modifying)


def update_volume_node_from_image(node, image: sitk.Image) -> None:
    """Replace the node's voxels and geometry with those of ``image``."""
    array, geometry = image_to_array(image)
    update_volume_node_from_array(node, array, geometry)


def volume_node_from_array(scene, array: np.ndarray, geometry: Geometry, name: str,
                           node_class: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node in ``scene`` (unique name from ``name``) with default display nodes."""
    if node_class not in VOLUME_CLASSES:
        raise ValueError(f"node_class must be one of {VOLUME_CLASSES}, not {node_class}.")
    node = scene.AddNewNodeByClass(node_class, scene.GenerateUniqueName(name))
    update_volume_node_from_array(node, array, geometry)
    node.CreateDefaultDisplayNodes()
    return node


def volume_node_from_image(scene, image: sitk.Image, name: str, node_class: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node in ``scene`` holding a copy of ``image`` with its geometry."""
    array, geometry = image_to_array(image)
    return volume_node_from_array(scene, array, geometry, name, node_class)
