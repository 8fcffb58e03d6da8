"""Render GadoReduce.ui offscreen (PySide6) into Resources/Screenshots/GadoReduce-panel.png.

Slicer's custom widgets (qMRMLNodeComboBox, ctkCollapsibleButton, ctkPathLineEdit, ctkSliderWidget) are drawn as their closest Qt
look-alikes; the picture shows the panel layout, not a running Slicer. Usage:
    pip install PySide6-Essentials
    python scripts/render_panel_screenshot.py GadoReduce/Resources/UI/GadoReduce.ui Resources/Screenshots/GadoReduce-panel.png
"""
import os, sys, re
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6 import QtWidgets, QtCore, QtUiTools, QtGui
ui_path = sys.argv[1]; out = sys.argv[2]
text = open(ui_path).read()
# Replace Slicer custom widgets with their closest Qt look-alikes for the picture.
text = text.replace('class="qMRMLWidget"', 'class="QWidget"').replace('class="ctkCollapsibleButton"', 'class="QGroupBox"')
text = text.replace('class="qMRMLNodeComboBox"', 'class="QComboBox"').replace('class="ctkPathLineEdit"', 'class="QLineEdit"')
text = text.replace('class="ctkSliderWidget"', 'class="QDoubleSpinBox"').replace('<property name="pageStep"><double>0.25</double></property>', '')
text = re.sub(r"<customwidgets>.*?</customwidgets>", "", text, flags=re.S)
text = re.sub(r"<connections>.*?</connections>", "", text, flags=re.S)
text = text.replace('<property name="text"><string>Inputs</string></property>', '<property name="title"><string>Inputs</string></property>')
for t in ("Acquisition", "Model and regions", "Outputs"):
    text = text.replace(f'<property name="text"><string>{t}</string></property>', f'<property name="title"><string>{t}</string></property>')
app = QtWidgets.QApplication([])
loader = QtUiTools.QUiLoader()
buf = QtCore.QBuffer(); buf.setData(text.encode()); buf.open(QtCore.QIODevice.ReadOnly)
w = loader.load(buf)
for name, items in {"preContrastSelector": ["pre_contrast"], "lowDoseSelector": ["low_dose_033"],
                    "standardDoseSelector": ["None"], "lesionSegmentationSelector": ["None"],
                    **{f"{n}Selector": ["Create new"] for n in ("syntheticStandardDose", "beyondStandardDose",
                       "contrastSignal", "enhancingRegions", "regionTable", "lesionTable", "subtraction",
                       "registeredLowDose", "registeredStandardDose", "virtualDoseVolume")},
                    "agentComboBox": ["gadobutrol", "gadoterate"], "deviceComboBox": ["auto", "cpu", "cuda"]}.items():
    w.findChild(QtWidgets.QComboBox, name).addItems(items)
w.findChild(QtWidgets.QLabel, "relaxivityLabel").setText("4.5 L/(mmol s) at 3 T")
w.findChild(QtWidgets.QLabel, "disclaimerLabel").setText("GadoReduce is research software. It is not a medical device and must not be used for diagnosis or treatment decisions.")
w.findChild(QtWidgets.QLineEdit, "modelPathLineEdit").setText(".../Resources/Models/gadoreduce_default.pt")
w.findChild(QtWidgets.QLabel, "applyReasonLabel").setText("Low-dose volume is not set (lowDose): select the low-dose contrast-enhanced T1w scan.")
w.resize(400, 1010); w.show(); app.processEvents()
w.grab().save(out)
print("saved", out)
