"""Fake of ``modules.shared``: cmd_opts, opts, state, total_tqdm, interrogator, models_path, sd_model."""
import argparse
import os

from modules import options, shared_state, shared_total_tqdm

cmd_opts = argparse.Namespace(no_half=False, lowvram=False, medvram=False, medvram_sdxl=False, use_cpu=[],
                              device_id=None, api_auth=None, api=False)
models_path = os.path.join(os.getcwd(), "models")
OptionInfo = options.OptionInfo
options_section = options.options_section
opts = options.Options({}, set())
state = shared_state.State()
total_tqdm = shared_total_tqdm.TotalTQDM()
interrogator = None
sd_model = None
demo = None
