"""The handshake's origin check: a foreign Origin is refused before accept, none is allowed."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from taskstore.consumers.tasks import TaskConsumer
from taskstore.origin import OriginValidator, origin_allowed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:8000", True),
        ("https://127.0.0.1", True),
        ("http://testserver", True),
        ("http://[::1]:8000", False),  # not in the test ALLOWED_HOSTS
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
        ("null", False),
        ("file://", False),
        ("ftp://localhost", False),
        ("http://localhost:notaport", False),
        ("", False),
    ],
)
def test_origins_are_judged_against_allowed_hosts(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin) is allowed


def test_allowed_hosts_patterns_apply(settings: Any) -> None:
    settings.ALLOWED_HOSTS = [".example.com", "[::1]"]
    assert origin_allowed("https://app.example.com")
    assert origin_allowed("http://[::1]:8000")
    assert not origin_allowed("https://example.org")


def test_debug_without_allowed_hosts_allows_localhost_only(settings: Any) -> None:
    settings.DEBUG, settings.ALLOWED_HOSTS = True, []
    assert origin_allowed("http://localhost:8000")
    assert not origin_allowed("http://evil.example")


async def handshake(headers: list[tuple[bytes, bytes]]) -> tuple[bool, Any]:
    communicator = WebsocketCommunicator(OriginValidator(TaskConsumer.as_asgi()), "/ws/tasks/", headers)
    try:
        return await communicator.connect()
    finally:
        await communicator.disconnect()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ([], True),
        ([(b"origin", b"http://localhost:8000")], True),
        ([(b"origin", b"https://evil.example")], False),
        ([(b"origin", b"null")], False),
    ],
)
async def test_the_handshake_is_refused_before_accept_for_a_foreign_origin(
    settings: Any, headers: list[tuple[bytes, bytes]], accepted: bool
) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    connected, _ = await handshake(headers)
    assert connected is accepted
