"""Fake of ``comfy.utils.ProgressBar``: records every update in ``UPDATES``."""
from typing import List, Tuple

#: (bar id, value, total) for every update of every bar.
UPDATES: List[Tuple[int, int, int]] = []
PROGRESS_BAR_HOOK = None


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        if value > self.total:
            value = self.total
        self.current = value
        UPDATES.append((id(self), self.current, self.total))

    def update(self, value):
        self.update_absolute(self.current + value)
