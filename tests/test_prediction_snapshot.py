"""The shipped bundle answers every row of the bundled test split exactly as the stored snapshot says:
every field, to 1e-6. A change that is meant to change answers rewrites the snapshot with
``python tools/prediction_snapshot.py write`` and says so in its commit."""

import pytest

from tests.snapshot import SNAPSHOT, differences, predict_split, read_snapshot


@pytest.mark.slow
def test_the_shipped_bundle_answers_the_test_split_as_the_snapshot_says(shipped_model):
    before = read_snapshot()
    after = predict_split(shipped_model)
    assert len(after) == len(before) == 988
    found = differences(before, after, "rows")
    assert not found, f"{len(found)} fields differ from {SNAPSHOT.name}, e.g. " + "; ".join(found[:5])
