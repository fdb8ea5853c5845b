"""What an earlier step must have saved is checked explicitly, so `python -O` keeps the check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from functions.core.record.errors import PermanentError, RecordInconsistent, saved

REPO = Path(__file__).resolve().parents[2]


def test_saved_returns_what_the_record_holds() -> None:
    assert saved("app-object-1", "reg-1", "app_object_id", "owners") == "app-object-1"


def test_a_missing_value_is_a_permanent_error_naming_the_field_and_step() -> None:
    with pytest.raises(RecordInconsistent) as caught:
        saved(None, "reg-1", "app_object_id", "owners")
    assert isinstance(caught.value, PermanentError)
    assert caught.value.code == "RecordInconsistent"
    assert str(caught.value) == "registration reg-1: app_object_id is missing at the owners step"


def test_no_production_module_guards_with_assert_and_the_check_survives_optimisation() -> None:
    """Under -O every assert vanishes; the explicit check must still raise."""
    production = [p for p in (REPO / "functions").rglob("*.py") if "assert " in p.read_text(encoding="utf-8")]
    offenders = [
        str(p.relative_to(REPO))
        for p in production
        for line in p.read_text(encoding="utf-8").splitlines()
        if line.lstrip().startswith("assert ")
    ]
    assert offenders == []
    probe = (
        "from functions.core.record.errors import RecordInconsistent, saved\n"
        "try:\n    saved(None, 'reg-1', 'app_id', 'verify')\n"
        "except RecordInconsistent as e:\n    print('raised', e.missing)\n"
    )
    result = subprocess.run(
        [sys.executable, "-O", "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "raised app_id"
