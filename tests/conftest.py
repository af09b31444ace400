"""Fixtures shared by the data tests."""

import socket

import pytest


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails as it does without internet, even on a machine that has it."""

    def no_connection(*args, **kwargs):
        raise OSError("offline (test)")

    monkeypatch.setattr(socket, "create_connection", no_connection)
