"""Volume node <-> SimpleITK <-> numpy with full geometry, on real MRML (slicer-core)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import SimpleITK as sitk

from GadoReduceLib.io import imageio, mrml

ORIGIN_RAS = (12.5, -30.25, 7.75)
SPACING = (0.9, 1.1, 3.0)
SIZE = (7, 6, 5)  # i, j, k


def _oblique_directions_ras() -> np.ndarray:
    """Columns are the i, j, k axes in RAS: rotated 20 deg about z, then 30 deg about x."""
    a, b = math.radians(20), math.radians(30)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return rx @ rz


def make_oblique_node(scene, dtype=np.float32, name="oblique"):
    import slicer  # noqa: F401  (the real MRML classes)
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    array = (np.random.default_rng(3).random(SIZE[::-1]) * 1000).astype(dtype)
    image_data = vtkImageData()
    image_data.SetDimensions(*SIZE)
    image_data.GetPointData().SetScalars(numpy_to_vtk(array.ravel(), deep=True))
    node.SetAndObserveImageData(image_data)
    node.SetSpacing(*SPACING)
    node.SetOrigin(*ORIGIN_RAS)
    d = _oblique_directions_ras()
    node.SetIJKToRASDirections(*d.ravel())  # row-major 3x3, columns are the axes
    node.CreateDefaultDisplayNodes()
    return node, array


def node_matrix(node) -> np.ndarray:
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    m = vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def node_voxels(node) -> np.ndarray:
    from vtkmodules.util.numpy_support import vtk_to_numpy
    dims = node.GetImageData().GetDimensions()
    return vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).reshape(dims[::-1])


def test_node_to_sitk_converts_ras_to_lps(harness):
    node, array = make_oblique_node(harness.scene)
    image = mrml.image_from_volume_node(node)
    assert image.GetSize() == SIZE
    assert np.allclose(image.GetSpacing(), SPACING)
    assert np.allclose(image.GetOrigin(), (-ORIGIN_RAS[0], -ORIGIN_RAS[1], ORIGIN_RAS[2]))
    # every voxel index maps to the same physical point in both conventions
    ijk_to_ras = node_matrix(node)
    for index in [(0, 0, 0), (6, 5, 4), (3, 1, 2)]:
        ras = ijk_to_ras @ np.array([*index, 1.0])
        lps = image.TransformIndexToPhysicalPoint(index)
        assert np.allclose(lps, (-ras[0], -ras[1], ras[2]), atol=1e-9)
    assert np.array_equal(sitk.GetArrayFromImage(image), array)
    assert imageio.Geometry.from_image(image).is_oblique()


def test_oblique_node_survives_round_trip(harness):
    node, array = make_oblique_node(harness.scene)
    before = node_matrix(node)
    copy = mrml.volume_node_from_image(harness.scene, mrml.image_from_volume_node(node), "copy")
    assert copy is not node and copy.GetName() == "copy"
    assert np.allclose(node_matrix(copy), before, atol=1e-12)
    assert np.array_equal(node_voxels(copy), array)
    assert node_voxels(copy).dtype == np.float32
    assert np.array_equal(node_voxels(node), array), "input voxels changed"
    assert np.allclose(node_matrix(node), before), "input geometry changed"


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float64])
def test_round_trip_keeps_voxel_type(harness, dtype):
    node, array = make_oblique_node(harness.scene, dtype=dtype)
    back, geometry = mrml.array_from_volume_node(node)
    assert back.dtype == dtype and np.array_equal(back, array)
    labelmap = mrml.volume_node_from_array(harness.scene, back, geometry, "labels", "vtkMRMLLabelMapVolumeNode")
    assert labelmap.IsA("vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(node_voxels(labelmap), array)


def test_numpy_geometry_round_trip():
    geometry = imageio.Geometry.from_ijk_to_ras(_ijk_to_ras_matrix(), SIZE)
    array = np.arange(np.prod(SIZE), dtype=np.float32).reshape(SIZE[::-1])
    image = imageio.array_to_image(array, geometry)
    back, geometry_back = imageio.image_to_array(image)
    assert geometry_back.is_close(geometry, atol=1e-12)
    assert np.allclose(geometry.ijk_to_ras(), _ijk_to_ras_matrix(), atol=1e-12)
    assert np.array_equal(back, array)
    with pytest.raises(ValueError, match="does not fit a grid"):
        imageio.array_to_image(array.transpose(), geometry)


def _ijk_to_ras_matrix() -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = _oblique_directions_ras() @ np.diag(SPACING)
    m[:3, 3] = ORIGIN_RAS
    return m


def test_parent_linear_transform_is_applied(harness):
    node, _ = make_oblique_node(harness.scene)
    transform = harness.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    m = vtkMatrix4x4()
    m.SetElement(0, 3, 5.0)   # +5 mm towards R
    m.SetElement(2, 3, -2.0)  # -2 mm towards I
    transform.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(transform.GetID())
    world = mrml.image_from_volume_node(node, world=True)
    local = mrml.image_from_volume_node(node, world=False)
    assert np.allclose(np.subtract(world.GetOrigin(), local.GetOrigin()), (-5.0, 0.0, -2.0))
    assert np.allclose(world.GetDirection(), local.GetDirection())


def test_non_linear_parent_transform_is_refused(harness):
    node, _ = make_oblique_node(harness.scene)
    transform = harness.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(ValueError, match="Harden the transform"):
        mrml.image_from_volume_node(node)


def test_bad_nodes_give_clear_errors(harness):
    with pytest.raises(ValueError, match="No volume"):
        mrml.image_from_volume_node(None)
    empty = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="has no voxels"):
        mrml.image_from_volume_node(empty)
    table = harness.scene.AddNewNodeByClass("vtkMRMLTableNode", "table")
    with pytest.raises(ValueError, match="scalar volume"):
        mrml.image_from_volume_node(table)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_files_written_by_mrml_storage_nodes(harness, tmp_path, suffix):
    """MRML writes the node; SimpleITK and MRML read it back with the same geometry and voxels."""
    import slicer
    node, array = make_oblique_node(harness.scene)
    path = str(tmp_path / f"oblique{suffix}")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    harness.scene.AddNode(storage)
    storage.SetFileName(path)
    assert storage.WriteData(node) == 1
    image = imageio.read_image(path)
    expected = mrml.image_from_volume_node(node)
    atol = 1e-5 if suffix == ".nii.gz" else 1e-9  # NIfTI stores the matrix as float32
    assert imageio.Geometry.from_image(image).is_close(imageio.Geometry.from_image(expected), atol=atol)
    assert np.array_equal(sitk.GetArrayFromImage(image), array)
    # and MRML reads it back into a new node with the same geometry
    reread = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "reread")
    storage2 = slicer.vtkMRMLVolumeArchetypeStorageNode()
    harness.scene.AddNode(storage2)
    storage2.SetFileName(path)
    assert storage2.ReadData(reread) == 1
    assert np.allclose(node_matrix(reread), node_matrix(node), atol=atol)
    assert np.array_equal(node_voxels(reread), array)


def test_image_written_by_gadoreduce_loads_in_mrml(harness, tmp_path):
    node, array = make_oblique_node(harness.scene)
    path = imageio.write_image(mrml.image_from_volume_node(node), tmp_path / "sub" / "out.nrrd")
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".partial")]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by others like any written file
    import slicer
    reread = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "reread")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    harness.scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(reread) == 1
    assert np.allclose(node_matrix(reread), node_matrix(node), atol=1e-9)
    assert np.array_equal(node_voxels(reread), array)


# ------------------------------------------------------------------ writing a node as Slicer saves it


def test_write_volume_node_uses_mrml_and_keeps_world_geometry(harness, tmp_path):
    """The module's worker inputs: written by MRML's storage node with the world geometry (a linear parent
    transform included), voxels and type unchanged, and the node itself untouched (no storage node, not
    modified)."""
    import slicer  # noqa: F401
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    node, array = make_oblique_node(harness.scene, dtype=np.int16)
    transform = harness.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    m = vtkMatrix4x4()
    m.SetElement(1, 3, 7.5)
    transform.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(transform.GetID())
    nodes_before, modified_before = harness.scene.GetNumberOfNodes(), node.GetMTime()
    path = mrml.write_volume_node(node, tmp_path / "pre_contrast.nrrd")
    assert path.read_bytes().startswith(b"NRRD") and b"encoding: raw" in path.read_bytes()[:1000]
    image = imageio.read_image(path)
    expected = mrml.image_from_volume_node(node, world=True)
    assert imageio.Geometry.from_image(image).is_close(imageio.Geometry.from_image(expected), atol=1e-9)
    assert not imageio.Geometry.from_image(image).is_close(
        imageio.Geometry.from_image(mrml.image_from_volume_node(node, world=False)), atol=1.0)
    assert image.GetPixelID() == sitk.sitkInt16 and np.array_equal(sitk.GetArrayFromImage(image), array)
    assert node.GetNumberOfStorageNodes() == 0 and harness.scene.GetNumberOfNodes() == nodes_before
    assert node.GetMTime() == modified_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pre_contrast.nrrd"]


def test_write_volume_node_refuses_what_it_cannot_write(harness, tmp_path):
    node, _ = make_oblique_node(harness.scene)
    warp = harness.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    node.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(ValueError, match="Harden the transform"):
        mrml.write_volume_node(node, tmp_path / "x.nrrd")
    empty = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="has no voxels"):
        mrml.write_volume_node(empty, tmp_path / "x.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_write_volume_node_on_a_full_disk_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE (SIGXFSZ ignored) makes the write fail part-way as a full disk does: OSError that names the
    file and the fix, and no file left."""
    import subprocess
    import sys
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "import numpy as np, slicer\n"
        "from GadoReduceLib.io import mrml\n"
        "scene = slicer.vtkMRMLScene()\n"
        "node = scene.AddNewNodeByClass('vtkMRMLScalarVolumeNode', 'big')\n"
        "slicer.util.updateVolumeFromArray(node, np.ones((64, 64, 128), np.float32))\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        "try:\n"
        f"    mrml.write_volume_node(node, {str(tmp_path / 'big.nrrd')!r})\n"
        "except OSError as error:\n"
        "    print('OSError:', error)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "OSError: big.nrrd" in run.stdout, run.stdout + run.stderr
    assert "disk may be full" in run.stdout or "not written completely" in run.stdout, run.stdout
    assert list(tmp_path.iterdir()) == []
