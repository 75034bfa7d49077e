"""Fake of ``modules.ui_components``: the webui's form components that the extension uses, built on the real
gradio (same constructors and block names as A1111 1.10 and Forge)."""
import gradio as gr


class FormComponent:
    def get_expected_parent(self):
        return gr.components.Form

from gradio.events import Dependency

class DropdownEditable(FormComponent, gr.Dropdown):
    """A ``gr.Dropdown`` whose value may be typed: the custom-value flag is set by the constructor only, so it is
    never part of the component arguments that the settings page later sends to ``gr.update``."""

    def __init__(self, **kwargs):
        super().__init__(allow_custom_value=True, **kwargs)

    def get_block_name(self):
        return "dropdown"