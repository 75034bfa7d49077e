"""Fake of ``comfy_api.latest._io``: the V3 schema types the pack uses (same names, signatures and V1 view).

Like the real module, a node class is never instantiated by ComfyUI: ``PREPARE_CLASS_CLONE`` makes a clone
that carries the hidden inputs (``cls.hidden``), and ``EXECUTE_NORMALIZED`` (the V1 ``FUNCTION``) calls the
classmethod ``execute`` and wraps its result in a :class:`NodeOutput`. The V1 view (``INPUT_TYPES``,
``RETURN_TYPES``, ``RETURN_NAMES``, ``OUTPUT_IS_LIST``, ``INPUT_IS_LIST``) is derived from the schema the way
ComfyUI derives it: an output's name is its ``display_name`` (else its type).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, List, Optional


def _prune(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    def __init__(self, unique_id: str, prompt: Any, extra_pnginfo: Any, dynprompt: Any,
                 auth_token_comfy_org: str, api_key_comfy_org: str, **kwargs):
        self.unique_id = unique_id
        self.prompt = prompt
        self.extra_pnginfo = extra_pnginfo
        self.dynprompt = dynprompt
        self.auth_token_comfy_org = auth_token_comfy_org
        self.api_key_comfy_org = api_key_comfy_org

    def __getattr__(self, key: str):
        return None

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "HiddenHolder":
        d = d or {}
        return cls(**{h.name: d.get(h, None) for h in Hidden})


# -- inputs and outputs ----------------------------------------------------------------------------------------
class Input:
    io_type: str = None

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 extra_dict=None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict if extra_dict is not None else {}

    def as_dict(self) -> dict:
        return _prune({"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                       "lazy": self.lazy}) | _prune(self.extra_dict)

    def get_io_type(self):
        return self.io_type


class WidgetInput(Input):
    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 default: Any = None, socketless: bool = None, widget_type: str = None, force_input: bool = None,
                 extra_dict=None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self) -> dict:
        return super().as_dict() | _prune({"default": self.default, "socketless": self.socketless,
                                           "widgetType": self.widget_type, "forceInput": self.force_input})


class Output:
    io_type: str = None

    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def as_dict(self) -> dict:
        return _prune({"display_name": self.display_name, "tooltip": self.tooltip,
                       "is_output_list": self.is_output_list})

    def get_io_type(self):
        return self.io_type


class ComfyTypeIO:
    io_type: str = None
    Input = Input
    Output = Output


def comfytype(io_type: str, **kwargs):
    """Bind ``io_type`` to a type class and to its own copies of its Input/Output classes."""
    def decorator(cls):
        cls.io_type = io_type
        cls.Input = type(cls.Input.__name__, (cls.Input,), {"io_type": io_type})
        cls.Output = type(cls.Output.__name__, (cls.Output,), {"io_type": io_type})
        return cls
    return decorator


def Custom(io_type: str) -> type:
    @comfytype(io_type=io_type)
    class CustomComfyType(ComfyTypeIO):
        ...
    return CustomComfyType


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, default: bool = None, label_on: str = None, label_off: str = None,
                     socketless: bool = None, force_input: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.label_on = label_on
            self.label_off = label_off

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"label_on": self.label_on, "label_off": self.label_off})


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, default: int = None, min: int = None, max: int = None, step: int = None,
                     control_after_generate: bool = None, display_mode=None, socketless: bool = None,
                     force_input: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min, self.max, self.step = min, max, step
            self.control_after_generate = control_after_generate

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"min": self.min, "max": self.max, "step": self.step,
                                               "control_after_generate": self.control_after_generate})


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, default: float = None, min: float = None, max: float = None,
                     step: float = None, round: float = None, display_mode=None, socketless: bool = None,
                     force_input: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.min, self.max, self.step, self.round = min, max, step, round

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"min": self.min, "max": self.max, "step": self.step,
                                               "round": self.round})


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, multiline=False, placeholder: str = None, default: str = None,
                     dynamic_prompts: bool = None, socketless: bool = None, force_input: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.multiline = multiline
            self.placeholder = placeholder
            self.dynamic_prompts = dynamic_prompts

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"multiline": self.multiline, "placeholder": self.placeholder,
                                               "dynamicPrompts": self.dynamic_prompts})


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    class Input(WidgetInput):
        def __init__(self, id: str, options: list = None, display_name: str = None, optional=False,
                     tooltip: str = None, lazy: bool = None, default: Any = None,
                     control_after_generate: bool = None, upload=None, image_folder=None, remote=None,
                     socketless: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
            self.multiselect = False
            self.options = options
            self.control_after_generate = control_after_generate

        def as_dict(self) -> dict:
            return super().as_dict() | _prune({"multiselect": self.multiselect, "options": self.options,
                                               "control_after_generate": self.control_after_generate})


@comfytype(io_type="IMAGE")
class Image(ComfyTypeIO):
    pass


@comfytype(io_type="CLIP")
class Clip(ComfyTypeIO):
    pass


@comfytype(io_type="CONDITIONING")
class Conditioning(ComfyTypeIO):
    pass


# -- schema and node -----------------------------------------------------------------------------------------
@dataclass
class Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: List[Input] = None
    outputs: List[Output] = None
    hidden: List[Hidden] = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False
    #: other names the node is found by in the search box (newer ComfyUI; 0.3.75's Schema has no such field)
    search_aliases: List[str] = None

    def validate(self) -> None:
        ins = [i.id for i in self.inputs or []]
        outs = [o.id for o in self.outputs or []]
        issues = [f"{what} ids must be unique, but {[k for k, n in Counter(ids).items() if n > 1]} are not."
                  for what, ids in (("Input", ins), ("Output", outs)) if len(set(ids)) != len(ids)]
        if set(ins) & set(outs):
            issues.append(f"Ids must be unique between inputs and outputs, but {set(ins) & set(outs)} are not.")
        if issues:
            raise ValueError("\n".join(issues))

    def finalize(self) -> None:
        for i, output in enumerate(self.outputs or []):
            if output.id is None:
                output.id = f"_{i}_{output.io_type}_"

    def v1_inputs(self) -> dict:
        out: dict = {"required": {}}
        for i in self.inputs or []:
            d = i.as_dict()
            d.pop("optional", None)
            out.setdefault("optional" if i.optional else "required", {})[i.id] = (i.get_io_type(), d)
        for h in self.hidden or []:
            out.setdefault("hidden", {})[h.name] = (h.value,)
        return out


class classproperty:
    def __init__(self, fget):
        self.fget = fget

    def __get__(self, obj, owner):
        return self.fget(owner)


class NodeOutput:
    def __init__(self, *args: Any, ui: Any = None, expand: dict = None, block_execution: str = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args if len(self.args) > 0 else None

    def __getitem__(self, index) -> Any:
        return self.args[index]


class ComfyNode(ABC):
    RELATIVE_PYTHON_MODULE = None
    SCHEMA = None
    hidden: HiddenHolder = None

    @classmethod
    @abstractmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    @abstractmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    FUNCTION = "EXECUTE_NORMALIZED"

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        schema = cls.define_schema()
        schema.finalize()
        schema.validate()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def INPUT_TYPES(cls, include_hidden=True, return_schema=False):
        schema = cls.define_schema()
        schema.finalize()
        inputs = schema.v1_inputs()
        if not include_hidden:
            inputs.pop("hidden", None)
        return (inputs, schema) if return_schema else inputs

    @classproperty
    def RETURN_TYPES(cls):
        return [o.io_type for o in cls.GET_SCHEMA().outputs or []]

    @classproperty
    def RETURN_NAMES(cls):
        return [o.display_name or o.io_type for o in cls.GET_SCHEMA().outputs or []]

    @classproperty
    def OUTPUT_IS_LIST(cls):
        return [o.is_output_list for o in cls.GET_SCHEMA().outputs or []]

    @classproperty
    def OUTPUT_TOOLTIPS(cls):
        return [o.tooltip for o in cls.GET_SCHEMA().outputs or []]

    @classproperty
    def INPUT_IS_LIST(cls):
        return cls.GET_SCHEMA().is_input_list

    @classproperty
    def CATEGORY(cls):
        return cls.GET_SCHEMA().category

    @classproperty
    def DESCRIPTION(cls):
        return cls.GET_SCHEMA().description

    @classmethod
    def PREPARE_CLASS_CLONE(cls, hidden_inputs: dict) -> type:
        clone = type(cls.__name__, (cls,), {})
        clone.hidden = HiddenHolder.from_dict(hidden_inputs)
        return clone

    @classmethod
    def EXECUTE_NORMALIZED(cls, *args, **kwargs) -> NodeOutput:
        out = cls.execute(*args, **kwargs)
        if out is None:
            return NodeOutput()
        if isinstance(out, NodeOutput):
            return out
        if isinstance(out, tuple):
            return NodeOutput(*out)
        raise Exception(f"Invalid return type from node: {type(out)}")
