"""Fake of ``modules.ui_settings``: how the Settings page builds an option's component and refreshes it on
every page load (A1111 1.10 / Forge behaviour, re-stated; no webui code copied).

* :func:`create_setting_component`: ``component(label=..., value=..., elem_id=..., **component_args)``; no
  component: Textbox for str, Number for int, Checkbox for bool.
* :func:`get_value_for_setting`: ``gr.update(value=<current value>, **component_args)`` (minus ``precision``),
  returned for every option by the page's ``demo.load``; gradio turns it into the component's own update
  (gradio 3: ``Component.update(**args)``), so an argument the component's ``update`` refuses breaks the
  whole refresh.
"""
import gradio as gr

from modules.shared import opts


def _args(info):
    return (info.component_args() if callable(info.component_args) else info.component_args) or {}


def get_value_for_setting(key):
    info = opts.data_labels[key]
    args = {k: v for k, v in _args(info).items() if k != "precision"}
    return gr.update(value=getattr(opts, key), **args)


def create_setting_component(key, is_quicksettings=False):
    info = opts.data_labels[key]
    kind = type(info.default)
    if info.component is not None:
        comp = info.component
    elif kind is str:
        comp = gr.Textbox
    elif kind is int:
        comp = gr.Number
    elif kind is bool:
        comp = gr.Checkbox
    else:
        raise Exception(f"bad options item type: {kind} for key {key}")
    value = opts.data[key] if key in opts.data else info.default
    return comp(label=info.label, value=value, elem_id=f"setting_{key}", **_args(info))


def add_settings_refresh(demo, keys):
    """The page-load refresh (``UiSettings.add_functionality``): one ``demo.load`` updating every component."""
    components = [create_setting_component(k) for k in keys]

    def get_settings_values():
        return [get_value_for_setting(k) for k in keys]

    demo.load(fn=get_settings_values, inputs=[], outputs=components, queue=False)
    return components
