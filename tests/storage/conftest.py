"""Fixtures for the storage room: a real LMDB environment in a temporary folder."""

from __future__ import annotations

import pytest

from storage import Store


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "lmdb")
    yield opened
    opened.close()
