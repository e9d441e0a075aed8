"""The one status vocabulary: trainer result -> stored status, retries and failures."""

import pytest

from cnnlab import status as st


@pytest.mark.parametrize(("trainer", "acc", "classes", "stored"), [
    ("ok", 0.9, 10, "ok"), ("stopped", 0.9, 10, "ok"),  # early stopping is a good end
    ("ok", 0.11, 10, "stuck"), ("stopped", 0.05, 10, "stuck"),
    ("ok", None, 10, "ok"), ("ok", 0.11, None, "ok"),  # nothing to judge "stuck" by
    ("diverged", 0.1, 10, "diverged"),  # diverged wins over stuck
    ("exploded", 0.9, 10, "failed"),
])
def test_stored_status(trainer, acc, classes, stored):
    assert st.stored_status(trainer, acc, classes) == stored


def test_the_sets_agree():
    assert set(st.TRAINER_STATUSES) - {st.STOPPED} <= set(st.FINAL_STATUSES)
    assert set(st.DONE) | set(st.RETRIED) == set(st.FINAL_STATUSES)
    assert not set(st.DONE) & set(st.RETRIED)
    assert [s for s in st.FINAL_STATUSES if st.is_failure(s)] == ["diverged", "failed"]
    assert [s for s in st.FINAL_STATUSES if not st.is_done(s)] == ["failed"]
    assert st.is_stuck(0.1 + st.STUCK_MARGIN, 10) and not st.is_stuck(0.13, 10)
