"""Fake of ``modules.shared_total_tqdm.TotalTQDM`` (records calls instead of drawing a bar)."""


class TotalTQDM:
    def __init__(self):
        self.total = None
        self.updates = 0
        self.cleared = 0

    def reset(self):
        self.updates = 0

    def update(self):
        self.updates += 1

    def updateTotal(self, new_total):
        self.total = new_total

    def clear(self):
        self.cleared += 1
