"""Fake of the webui's ``launch`` module (``launch_utils`` re-exports): is_installed / run_pip."""
import argparse
import importlib.metadata
import importlib.util

args = argparse.Namespace(skip_install=False)
default_command_live = False
pip_calls = []  # commands given to run_pip


def is_installed(package):
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        try:
            spec = importlib.util.find_spec(package)
        except ModuleNotFoundError:
            return False
        return spec is not None
    return dist is not None


def run_pip(command, desc=None, live=default_command_live):
    if args.skip_install:
        return
    pip_calls.append((command, desc))
    return ""
