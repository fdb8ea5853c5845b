"""Fixtures shared by the unit tests of the triggers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions import bootstrap
from tests.unit.provisioning_world import World
from tests.unit.test_registration_triggers import FakeServices


@pytest.fixture
def svc() -> Iterator[FakeServices]:
    """The process's wiring replaced by fakes over a fresh World, for the triggers to find."""
    services = FakeServices(World())
    bootstrap.reset_services(services)  # type: ignore[arg-type]
    yield services
    bootstrap.reset_services(None)
