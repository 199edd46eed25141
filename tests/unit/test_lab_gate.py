"""Without the lab, its tests skip with a reason; with RUNBOOK_REQUIRE_LAB=1 they fail."""

from __future__ import annotations

import pytest

from tests.conftest import lab_missing


def test_a_missing_lab_skips_unless_it_is_required(monkeypatch):
    monkeypatch.delenv("RUNBOOK_REQUIRE_LAB", raising=False)
    with pytest.raises(pytest.skip.Exception, match="the lab is not up"):
        lab_missing("the lab is not up")
    monkeypatch.setenv("RUNBOOK_REQUIRE_LAB", "1")
    with pytest.raises(pytest.fail.Exception, match="the lab is not up"):
        lab_missing("the lab is not up")
