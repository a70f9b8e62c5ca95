"""Fixtures shared by the test modules."""

import pytest

from sklearn_shapley.amortized import _fastshap


@pytest.fixture
def expected_loss_calls(monkeypatch):
    """``(game class name, rows)`` of every call FastSHAP makes to
    ``_expected_loss_statistics`` while the test runs."""
    seen = []
    original = _fastshap._expected_loss_statistics

    def spy(game, rows, empty, kernel, **kwargs):
        seen.append((type(game).__name__, len(rows)))
        return original(game, rows, empty, kernel, **kwargs)

    monkeypatch.setattr(_fastshap, "_expected_loss_statistics", spy)
    return seen
