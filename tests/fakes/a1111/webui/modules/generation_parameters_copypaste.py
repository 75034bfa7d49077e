"""Fake of the pre-1.7 module name (an alias of infotext_utils in A1111 1.10; absent in Forge)."""
from modules.infotext_utils import *  # noqa: F401,F403
from modules.infotext_utils import ParamBinding, create_buttons, register_paste_params_button  # noqa: F401
