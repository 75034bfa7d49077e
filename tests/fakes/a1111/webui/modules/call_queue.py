"""Fake of ``modules.call_queue``: queue_lock (a FIFO lock in the webui; a plain Lock with locked() here)."""
import threading

queue_lock = threading.Lock()


def wrap_queued_call(func):
    def f(*args, **kwargs):
        with queue_lock:
            return func(*args, **kwargs)
    return f
