"""Fixtures shared by the processor tests and the fault drills (both on the real stack)."""
from __future__ import annotations

import pytest

from tests.processor_helpers import db_call


@pytest.fixture
def stored_guide(isolated_settings, guide_reference):
    """The bundled guide, stored in the test's database."""
    db_call(isolated_settings, lambda db: db.save_reference(guide_reference))
    return guide_reference
