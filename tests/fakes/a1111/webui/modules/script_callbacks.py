"""Fake of ``modules.script_callbacks``: registration functions and the runners the webui calls."""
from collections import defaultdict

callback_map = defaultdict(list)


def clear_callbacks():
    callback_map.clear()


def _add(category, callback, name):
    callback_map[category].append((name, callback))


def on_app_started(callback, *, name=None):
    _add("app_started", callback, name)


def on_ui_tabs(callback, *, name=None):
    _add("ui_tabs", callback, name)


def on_ui_settings(callback, *, name=None):
    _add("ui_settings", callback, name)


def on_script_unloaded(callback, *, name=None):
    _add("script_unloaded", callback, name)


def on_before_ui(callback, *, name=None):
    _add("before_ui", callback, name)


def app_started_callback(demo, app):
    for _, c in callback_map["app_started"]:
        c(demo, app)


def ui_tabs_callback():
    res = []
    for _, c in callback_map["ui_tabs"]:
        res += c() or []
    return res


def ui_settings_callback():
    for _, c in callback_map["ui_settings"]:
        c()


def script_unloaded_callback():
    for _, c in callback_map["script_unloaded"]:
        c()
