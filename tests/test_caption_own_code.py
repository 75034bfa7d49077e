"""Issue 19 item 7: a caption folder whose config.json has an ``auto_map`` to its own code beside a native
``model_type`` is refused without ``trust_remote_code`` (naming it and what ``auto_map`` points to) and loads its
own code with it (not the native class)."""
import json
import shutil

import pytest

from interrogator_core import ModelLoadError
from interrogator_core.caption import load_captioner
from interrogator_core.testing import make_tiny_blip

MODELING = '''\
from transformers import BlipForConditionalGeneration


class OwnBlip(BlipForConditionalGeneration):
    """The folder's own class (a subclass of the native one)."""
'''


@pytest.fixture()
def own_code_blip(tiny_models, tmp_path):
    folder = tmp_path / "own-code-blip"
    shutil.copytree(tiny_models["blip"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_own.OwnBlip"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_own.py").write_text(MODELING)
    return folder


def test_own_code_folder_is_refused_without_trust_remote_code(own_code_blip):
    with pytest.raises(ModelLoadError) as e:
        load_captioner(str(own_code_blip))
    text = str(e.value)
    assert "trust_remote_code" in text and "modeling_own.OwnBlip" in text


def test_own_code_folder_loads_its_own_class_with_trust_remote_code(own_code_blip):
    cap = load_captioner(str(own_code_blip), trust_remote_code=True)
    assert type(cap.handle.module).__name__ == "OwnBlip"
    assert type(cap.handle.module).__module__.split(".")[-1] == "modeling_own"


def test_native_folder_still_loads_the_native_class(tiny_models):
    cap = load_captioner(str(tiny_models["blip"]), trust_remote_code=True)
    assert type(cap.handle.module).__name__ == "BlipForConditionalGeneration"
