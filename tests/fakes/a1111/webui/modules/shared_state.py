"""Fake of ``modules.shared_state.State``; ``events`` records begin/end/interrupt for the tests."""
import time


class State:
    skipped = False
    interrupted = False
    stopping_generation = False
    job = ""
    job_no = 0
    job_count = 0
    job_timestamp = '0'
    sampling_step = 0
    sampling_steps = 0
    textinfo = None
    time_start = None

    def __init__(self):
        self.events = []

    def interrupt(self):
        self.interrupted = True
        self.events.append(("interrupt",))

    def skip(self):
        self.skipped = True

    def begin(self, job: str = "(unknown)"):
        self.sampling_step = 0
        self.time_start = time.time()
        self.job_count = -1
        self.job_no = 0
        self.skipped = False
        self.interrupted = False
        self.stopping_generation = False
        self.textinfo = None
        self.job = job
        self.events.append(("begin", job))

    def end(self):
        self.events.append(("end", self.job))
        self.job = ""
        self.job_count = 0
