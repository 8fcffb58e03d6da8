"""STAND-IN for ``slicer.parameterNodeWrapper`` (Slicer Base/Python/slicer/parameterNodeWrapper/, 5.8-main).

Written from reading Slicer's wrapper.py, serializers.py, validators.py and guiConnectors.py (no code copied). It
rejects what the real wrapper rejects, with the real exception classes and messages:

- values are type-checked (``IsInstance``: a float parameter takes int or float, TypeError otherwise; ``None``
  is refused with "Value must not be None") and then checked by the annotations ``WithinRange``, ``Minimum``,
  ``Maximum`` and ``Choice``;
- they are stored as Slicer stores them: ``str(value)`` for numbers and paths, "True"/"False" for bools, the
  text for str, node references under the parameter's name (with an empty parameter beside them);
- defaults are written (and validated) when the wrapper is created on a node that lacks them;
- ``allParameters`` is a dict, reserved names are refused, unknown names in ``getValue`` raise;
- ``connectGui`` binds every widget with the dynamic property ``SlicerParameterName`` by its exact widget
  class (as Slicer's connectors do), both ways; a type the widget cannot represent raises the real
  RuntimeError. Widgets are driven through their PythonQt-style interface (``slicer_harness.qtwidgets``).
"""

from __future__ import annotations

import enum
import pathlib
import types
import typing

RESERVED = ("allParameters", "default", "isCached", "dataType", "getValue", "setValue", "connectGui",
            "connectParametersToGui", "disconnectGui", "StartModify", "EndModify", "AddObserver", "RemoveObserver",
            "Modified")


# --- validators (validators.py) ------------------------------------------------------------

class Validator:
    def validate(self, value) -> None:
        raise NotImplementedError


class NotNone(Validator):
    def validate(self, value):
        if value is None:
            raise ValueError("Value must not be None")


class IsInstance(Validator):
    def __init__(self, classtype):
        self.classtype = classtype

    def validate(self, value):  # None passes (NotNone refuses it where a parameter needs a value)
        if value is not None and not isinstance(value, self.classtype):
            raise TypeError(f"Value must be of type '{self.classtype}', is type '{type(value)}' value '{value}'")


class WithinRange(Validator):
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


class Minimum(Validator):
    def __init__(self, minimum):
        self.minimum = minimum

    def validate(self, value):
        if value < self.minimum:
            raise ValueError(f"Value must be greater than {self.minimum}, is {value}")


class Maximum(Validator):
    def __init__(self, maximum):
        self.maximum = maximum

    def validate(self, value):
        if value > self.maximum:
            raise ValueError(f"Value must be greater than {self.maximum}, is {value}")  # sic, as in Slicer


class Choice(Validator):
    def __init__(self, choices):
        self.choices = tuple(choices)

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


class Default:
    def __init__(self, value=None):
        self.value = value


# --- serializers (serializers.py) ----------------------------------------------------------

def _split(annotation):
    base, extras = annotation, ()
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
    return base, tuple(extras)


def _is_node_type(base) -> bool:
    return isinstance(base, type) and base.__name__.startswith("vtkMRML")


class _Serializer:
    """One parameter: how it is checked, written and read."""

    def __init__(self, name, annotation):
        base, extras = _split(annotation)
        self.name, self.extras = name, extras
        self.optional = False
        if typing.get_origin(base) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(base) if a is not type(None)]
            if len(members) != 1 or not _is_node_type(members[0]):
                raise Exception(f"Unable to create serializer for type: {base} (stand-in: only Optional[node])")
            base, self.optional = members[0], True
        self.base = base
        if _is_node_type(base):
            self.kind, self.builtin = "node", [IsInstance(base)]
        elif base is float:
            self.kind, self.builtin = "float", [NotNone(), IsInstance((int, float))]
        elif base in (int, str, bool) or base is pathlib.Path:
            self.kind, self.builtin = base.__name__, [NotNone(), IsInstance(base if base is not pathlib.Path
                                                                            else pathlib.PurePath)]
        elif isinstance(base, type) and issubclass(base, enum.Enum):
            self.kind, self.builtin = "enum", [IsInstance(base)]
        else:
            raise Exception(f"Unable to create serializer for {base} member {name}")
        self.validators = [v for v in extras if isinstance(v, Validator)]
        self.choices = next((v.choices for v in self.validators if isinstance(v, Choice)), None)

    def default(self, declared):
        if declared is not None:
            return declared
        defaults = {"float": 0.0, "int": 0, "str": "", "bool": False, "Path": pathlib.Path()}
        if self.kind == "enum":
            return next(iter(self.base))
        return defaults.get(self.kind)

    def validate(self, value):
        for validator in self.builtin + self.validators:
            validator.validate(value)

    def write(self, node, value):
        self.validate(value)
        if self.kind == "node":
            node.SetParameter(self.name, "")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
        elif self.kind == "bool":
            node.SetParameter(self.name, "True" if value else "False")
        elif self.kind == "enum":
            node.SetParameter(self.name, value.name)
        else:
            node.SetParameter(self.name, str(value))

    def read(self, node):
        if self.kind == "node":
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if self.kind == "bool":
            return text == "True"
        if self.kind == "enum":
            return self.base[text]
        return self.base(text)


# --- the wrapper (wrapper.py) --------------------------------------------------------------

class ParameterInfo(typing.NamedTuple):
    basename: str
    serializer: _Serializer
    default: Default
    unalteredType: object


def parameterNodeWrapper(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    for name in hints:
        if name in RESERVED:
            raise ValueError(f"Cannot use reserved name '{name}' in a parameterNodeWrapper")
    infos = {}
    for name, hint in hints.items():
        serializer = _Serializer(name, hint)
        declared = getattr(cls, name, None)
        extra_default = next((e.value for e in serializer.extras if isinstance(e, Default)), None)
        infos[name] = ParameterInfo(name, serializer, Default(serializer.default(
            declared if declared is not None else extra_default)), hint)

    def __init__(self, parameterNode, prefix=None):
        self.parameterNode = parameterNode
        self._guiConnections = {}
        for info in infos.values():
            present = (parameterNode.GetNodeReferenceID(info.basename) is not None
                       or info.basename in parameterNode.GetParameterNames()) if info.serializer.kind == "node" \
                else info.basename in parameterNode.GetParameterNames()
            if not present:
                info.serializer.write(parameterNode, info.default.value)

    def make_property(info):
        return property(lambda self: info.serializer.read(self.parameterNode),
                        lambda self, value: info.serializer.write(self.parameterNode, value))

    namespace = dict(cls.__dict__)
    for key in list(namespace):
        if key in hints or key in ("__dict__", "__weakref__"):
            namespace.pop(key)
    namespace.update({name: make_property(info) for name, info in infos.items()})
    namespace["__init__"] = __init__
    namespace["allParameters"] = property(lambda self: dict(infos))

    def default(self, name):
        return _info(name).default

    def _info(name):
        if name not in infos:
            raise ValueError(f"Cannot find a param with the given name: {name}\n  Found parameters {list(infos)}")
        return infos[name]

    namespace["default"] = default
    namespace["dataType"] = staticmethod(lambda name: _split(_info(name).unalteredType)[0])
    namespace["isCached"] = lambda self, name: bool(_info(name))
    namespace["getValue"] = lambda self, name: _info(name).serializer.read(self.parameterNode)
    namespace["setValue"] = lambda self, name, value: _info(name).serializer.write(self.parameterNode, value)
    namespace["StartModify"] = lambda self: self.parameterNode.StartModify()
    namespace["EndModify"] = lambda self, wasModifying: self.parameterNode.EndModify(wasModifying)
    namespace["AddObserver"] = lambda self, event, callback, *args: self.parameterNode.AddObserver(
        event, callback, *args)
    namespace["RemoveObserver"] = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    namespace["Modified"] = lambda self: self.parameterNode.Modified()
    namespace["connectGui"] = lambda self, gui: _connect_gui(self, gui, infos)
    namespace["disconnectGui"] = lambda self, tag: _disconnect_gui(self, tag)
    return type(cls.__name__, cls.__bases__, namespace)


# --- GUI connectors (guiConnectors.py) -----------------------------------------------------

def _widgets_of(gui):
    values = gui.__dict__.values() if not hasattr(gui, "findChildren") else gui.findChildren()
    return [w for w in values if hasattr(w, "property") and w.property("SlicerParameterName")]


def _connector_for(widget, serializer):
    """(read(widget), write(widget, value), signal) for the exact widget class, as Slicer's connectors."""
    cls = widget.className()
    kind = serializer.kind
    if cls in ("QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSpinBox") and kind == "float":
        ranges = [v for v in serializer.validators if isinstance(v, WithinRange)]
        if cls == "ctkSliderWidget" and not ranges:
            raise RuntimeError(f"Cannot have a connection to {cls} where the float types is unbounded.")
        if ranges:
            widget.minimum, widget.maximum = ranges[0].minimum, ranges[0].maximum
        return (lambda: float(widget.value)), (lambda v: setattr(widget, "value", v)), "valueChanged(double)"
    if cls in ("QComboBox", "ctkComboBox") and kind in ("float", "int", "str", "bool"):
        if serializer.choices is None:
            raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
        widget.clear()
        for choice in serializer.choices:
            widget.addItem(str(choice))
        choices = serializer.choices

        def write(value):
            if value not in choices:
                raise ValueError(f"Unable to find value {value} in choices {choices}")
            widget.currentIndex = choices.index(value)
        return (lambda: choices[widget.currentIndex]), write, "currentIndexChanged(int)"
    if cls == "ctkPathLineEdit" and kind == "Path":
        return (lambda: pathlib.Path(widget.currentPath)), (lambda v: setattr(widget, "currentPath", str(v))), \
            "currentPathChanged(QString)"
    if cls == "qMRMLNodeComboBox" and kind == "node":
        widget.nodeTypes = [serializer.base.__name__]
        return widget.currentNode, widget.setCurrentNode, "currentNodeChanged(vtkMRMLNode*)"
    if cls == "QLineEdit" and kind == "str":
        return (lambda: widget.text), (lambda v: setattr(widget, "text", v)), "textChanged(QString)"
    if cls in ("QCheckBox", "ctkCheckBox") and kind == "bool":
        return (lambda: bool(widget.checked)), (lambda v: setattr(widget, "checked", v)), "toggled(bool)"
    raise RuntimeError(f"Unable to create GUI connector from datatype '{serializer.base}' to widget type "
                       f"'{type(widget)}'. To determine which data types can be connected to which widget types, "
                       "please check 'canRepresent' methods in 'GuiConnector' classes.")


def _connect_gui(wrapper, gui, infos):
    import vtk
    bindings = []
    for widget in _widgets_of(gui):
        name = widget.property("SlicerParameterName")
        if name not in infos:
            raise ValueError(f"Cannot find a param with the given name: {name}\n  Found parameters {list(infos)}")
        serializer = infos[name].serializer
        read, write, signal = _connector_for(widget, serializer)
        state = {"updating": False}

        def to_node(*args, read=read, serializer=serializer, state=state):
            if not state["updating"]:
                serializer.write(wrapper.parameterNode, read())

        def to_widget(read=read, write=write, serializer=serializer, state=state):
            value = serializer.read(wrapper.parameterNode)
            if value is not None and read() == value:
                return
            state["updating"] = True
            try:
                write(value)
            finally:
                state["updating"] = False

        to_widget()
        widget.connect(signal, to_node)
        bindings.append((widget, signal, to_node, to_widget))
    observer = wrapper.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent,
                                                 lambda caller, event: [b[3]() for b in bindings])
    tag = object()
    wrapper._guiConnections[tag] = (bindings, observer)
    return tag


def _disconnect_gui(wrapper, tag):
    bindings, observer = wrapper._guiConnections.pop(tag, ((), None))
    for widget, signal, to_node, _ in bindings:
        widget.disconnect(signal, to_node)
    if observer is not None:
        wrapper.parameterNode.RemoveObserver(observer)


def module() -> types.ModuleType:
    """The ``slicer.parameterNodeWrapper`` stand-in module."""
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    for obj in (parameterNodeWrapper, Validator, NotNone, IsInstance, WithinRange, Minimum, Maximum, Choice,
                Default):
        setattr(pnw, obj.__name__, obj)
    return pnw
