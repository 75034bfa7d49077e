"""The "labels encoded" diagnostic counts labels, not progress messages (issue 21.7)."""
from interrogator_core.dataset import _LabelCounter  # the counter has no public surface: the Ray rows show its sum


def test_label_count_ignores_the_changing_eta_text():
    counter = _LabelCounter()
    total = 808
    for step, eta in ((100, "3m05s"), (400, "1m10s"), (700, "12s"), (total, "0s")):
        counter(step, total, f"encoding labels: flavors (ETA {eta})")
    counter(8, 8, "encoding labels: mediums")
    counter(5, 5, "captioning")  # not a label step
    assert counter.encoded == total + 8
