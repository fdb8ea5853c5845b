"""Fixtures shared by the e2e modules (each module starts its own stack: see rotation_support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.rotation_support import Receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 for the module's tests."""
    started = Receiver().start()
    try:
        yield started
    finally:
        started.close()
