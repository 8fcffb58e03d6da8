"""A scene with GadoReduce's kinds of nodes survives .mrb save and re-import (real MRML)."""

from __future__ import annotations

import numpy as np

from GadoReduceLib.io import mrml
from test_mrml_geometry import make_oblique_node, node_matrix, node_voxels


def _populate(scene):
    import slicer
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    volume, array = make_oblique_node(scene, name="pre-contrast")
    labels_array = (array > 500).astype(np.uint8)
    _, geometry = mrml.array_from_volume_node(volume)
    labels = mrml.volume_node_from_array(scene, labels_array, geometry, "enhancing", "vtkMRMLLabelMapVolumeNode")

    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "enhancing regions")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    seg_logic = slicer.vtkSlicerSegmentationsModuleLogic
    assert seg_logic.ImportLabelmapToSegmentationNode(labels, segmentation)

    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "enhancing statistics")
    table.AddColumn().SetName("region")
    table.AddColumn().SetName("volume_mm3")
    for row, (name, volume_mm3) in enumerate([("1", 123.5), ("2", 7.25)]):
        table.AddEmptyRow()
        table.SetCellText(row, 0, name)
        table.SetCellText(row, 1, str(volume_mm3))

    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "low dose to pre-contrast")
    m = vtkMatrix4x4()
    m.SetElement(0, 3, 2.5)
    m.SetElement(1, 1, 0.0); m.SetElement(1, 2, -1.0); m.SetElement(2, 1, 1.0); m.SetElement(2, 2, 0.0)  # noqa: E702
    transform.SetMatrixTransformToParent(m)
    return volume, array, labels_array


def test_mrb_reimports_with_same_nodes(harness, tmp_path):
    import slicer
    scene = harness.scene
    volume, array, labels_array = _populate(scene)
    names = {n: scene.GetFirstNodeByName(n).GetClassName()
             for n in ("pre-contrast", "enhancing", "enhancing regions", "enhancing statistics",
                       "low dose to pre-contrast")}
    matrix = node_matrix(volume)
    path = str(tmp_path / "case.mrb")
    assert scene.WriteToMRB(path)

    from slicer_harness import Harness
    other = Harness()  # a second real scene with its logics, as after restarting Slicer
    scene2 = other.scene
    assert scene2.ReadFromMRB(path)

    for name, class_name in names.items():
        node = scene2.GetFirstNodeByName(name)
        assert node is not None, f"{name} missing after re-import"
        assert node.GetClassName() == class_name
    volume2 = scene2.GetFirstNodeByName("pre-contrast")
    assert np.allclose(node_matrix(volume2), matrix, atol=1e-9)
    assert np.array_equal(node_voxels(volume2), array)
    assert np.array_equal(node_voxels(scene2.GetFirstNodeByName("enhancing")), labels_array)

    table2 = scene2.GetFirstNodeByName("enhancing statistics")
    assert table2.GetNumberOfRows() == 2
    assert table2.GetCellText(0, 1) == "123.5" and table2.GetCellText(1, 0) == "2"

    segmentation2 = scene2.GetFirstNodeByName("enhancing regions")
    assert segmentation2.GetSegmentation().GetNumberOfSegments() == 1
    labelmap = slicer.vtkOrientedImageData()
    segmentation2.GetBinaryLabelmapRepresentation(segmentation2.GetSegmentation().GetNthSegmentID(0), labelmap)
    from vtkmodules.util.numpy_support import vtk_to_numpy
    voxels = vtk_to_numpy(labelmap.GetPointData().GetScalars())
    assert int((voxels > 0).sum()) == int(labels_array.sum())

    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    m = vtkMatrix4x4()
    scene2.GetFirstNodeByName("low dose to pre-contrast").GetMatrixTransformToParent(m)
    assert m.GetElement(0, 3) == 2.5 and m.GetElement(1, 2) == -1.0
