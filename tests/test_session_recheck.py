"""An ended session ends what it granted, in-process (Channels' communicator, in-memory layer,
PostgreSQL): the re-check itself and its cost, the periodic check, and the signals that ask for
a check at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import logout
from django.contrib.auth.models import User
from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from taskstore import sessions
from taskstore.consumers import codes, queries, watch
from taskstore.consumers.feed import FeedConsumer
from taskstore.consumers.tasks import TaskConsumer
from taskstore.permissions import Viewer
from taskstore.recorder import Transition, record
from taskstore.tokens import make_token

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

STAFF_FIELDS = {"traceback", "args", "kwargs"}
SOCKETS = 10


@pytest.fixture(autouse=True)
def memory_layer(settings: Any) -> None:
    """Every test here on a fresh in-memory channel layer, with the periodic check off unless a
    test turns it on: a socket that ends then ended through a signal."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.TASKSTORE_RECONCILE_INTERVAL = 0


def log_in(user: User) -> str:
    """The key of a new session of ``user``, as a login makes it."""
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def grant(user: User, key: str | None) -> sessions.Grant:
    return sessions.Grant(user_id=user.pk, staff=user.is_staff, session_key=key)


# --- the re-check --------------------------------------------------------------------------------


def no_change(user: User, key: str) -> None:
    user.first_name = "Ada"
    user.save()


def session_deleted(user: User, key: str) -> None:
    Session.objects.filter(session_key=key).delete()


def session_expired(user: User, key: str) -> None:
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))


def password_changed(user: User, key: str) -> None:
    user.set_password("a new password")
    user.save()


def deactivated(user: User, key: str) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)


def deleted(user: User, key: str) -> None:
    user.delete()


def staff_removed(user: User, key: str) -> None:
    User.objects.filter(pk=user.pk).update(is_staff=False)


def session_of_another_user(user: User, key: str) -> None:
    other = User.objects.create_user("mallory")
    store = SessionStore(session_key=key)
    store["_auth_user_id"] = str(other.pk)
    store["_auth_user_hash"] = other.get_session_auth_hash()
    store.save()


# What the re-check leaves of a staff user's session after each change.
SAME, USER, NOTHING = "staff", "user", "anonymous"


@pytest.mark.parametrize(
    ("change", "left"),
    [
        (no_change, SAME),
        (session_deleted, NOTHING),
        (session_expired, NOTHING),
        (password_changed, NOTHING),
        (deactivated, NOTHING),
        (deleted, NOTHING),
        (staff_removed, USER),
        (session_of_another_user, NOTHING),
    ],
)
def test_the_recheck_reads_session_and_user_in_one_query(
    change: Callable[[User, str], None], left: str
) -> None:
    user = User.objects.create_user("ada", password="an old password", is_staff=True)
    key = log_in(user)
    change(user, key)
    with CaptureQueriesContext(connection) as queries:
        viewer = sessions.recheck(grant(user, key))
    expected = {
        SAME: Viewer(user_id=user.pk, staff=True),
        USER: Viewer(user_id=user.pk, staff=False),
        NOTHING: Viewer(),
    }[left]
    assert viewer == expected
    assert len(queries) == 1


def test_many_grants_are_rechecked_in_two_queries_each_as_alone() -> None:
    changes = [no_change, session_deleted, session_expired, password_changed, deactivated, deleted]
    changes += [staff_removed, session_of_another_user]
    grants = []
    for number, change in enumerate(changes):
        user = User.objects.create_user(f"user{number}", password="an old password", is_staff=True)
        key, other = log_in(user), log_in(user)
        # Each user's grants are made before the change (a deletion clears the user's pk): one
        # of the changed session, one of another session, one without a session.
        grants += [grant(user, key), grant(user, other), grant(user, None)]
        change(user, key)
    alone = {g: sessions.recheck(g) for g in grants}
    with CaptureQueriesContext(connection) as queries:
        together = sessions.recheck_many(grants)
    assert together == alone
    assert len(queries) == 2  # the users, then their live sessions
    # What the check must tell apart is there to tell apart: ended, kept, and narrowed grants.
    assert {v.anonymous for v in together.values()} == {True, False}
    assert any(v.user_id is not None and not v.staff for v in together.values())


def test_the_recheck_never_grants_more_than_the_handshake() -> None:
    user = User.objects.create_user("ada")
    key = log_in(user)
    User.objects.filter(pk=user.pk).update(is_staff=True)
    assert sessions.recheck(grant(user, key)) == Viewer(user_id=user.pk, staff=False)


def test_the_recheck_neither_flushes_nor_rotates_the_session() -> None:
    user = User.objects.create_user("ada", password="an old password")
    key = log_in(user)
    password_changed(user, key)
    assert sessions.recheck(grant(user, key)).anonymous
    assert Session.objects.filter(session_key=key).exists()  # Django's own get_user would flush it


def test_sessions_kept_in_the_cache_are_read_from_there(settings: Any) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    user = User.objects.create_user("ada", password="an old password")
    ended, changed = log_in(user), log_in(user)
    with CaptureQueriesContext(connection) as queries:
        assert sessions.recheck(grant(user, ended)) == Viewer(user_id=user.pk)
    assert len(queries) == 1  # the user row; the session came from the cache
    CacheSessionStore(session_key=ended).delete()
    assert sessions.recheck(grant(user, ended)).anonymous
    assert sessions.recheck(grant(user, changed)) == Viewer(user_id=user.pk)
    password_changed(user, changed)
    assert sessions.recheck(grant(user, changed)).anonymous


def test_a_user_from_elsewhere_than_a_session_is_checked_by_the_user_row() -> None:
    user = User.objects.create_user("ada", is_staff=True)
    assert sessions.recheck(grant(user, None)) == Viewer(user_id=user.pk, staff=True)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert sessions.recheck(grant(user, None)).anonymous


def test_signals_ask_only_for_changes_that_can_end_a_grant(monkeypatch: Any) -> None:
    asked: list[tuple[Any, Any]] = []
    monkeypatch.setattr(sessions, "ask_to_check", lambda user_id, ended=None: asked.append((user_id, ended)))
    user = User.objects.create_user("ada")
    assert asked == []  # a new user has no socket
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])  # every login does this
    assert asked == []
    user.is_active = False
    user.save(update_fields=["is_active"])
    user.save()
    assert asked == [(user.pk, None), (user.pk, None)]


# --- sockets -------------------------------------------------------------------------------------


@asynccontextmanager
async def socket(
    user: User, key: str | None, consumer: Any, path: str
) -> AsyncIterator[WebsocketCommunicator]:
    communicator = WebsocketCommunicator(consumer.as_asgi(), path)
    communicator.scope["user"] = user
    if key is not None:
        communicator.scope["session"] = SessionStore(session_key=key)
    connected, _ = await communicator.connect()
    assert connected
    try:
        yield communicator
    finally:
        await communicator.disconnect()


def feed(user: User, key: str | None) -> Any:
    return socket(user, key, FeedConsumer, "/ws/feed/")


def tasks_socket(user: User, key: str | None) -> Any:
    return socket(user, key, TaskConsumer, "/ws/tasks/")


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 3) -> int:
    """The close code the socket sends next (frames before it fail the test)."""
    output = await communicator.receive_output(timeout=timeout)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def still_serving(communicator: WebsocketCommunicator) -> None:
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}


def owned_task(owner: User | None) -> str:
    task_id = str(uuid4())
    record(
        Transition(
            task_id=task_id,
            state="PENDING",
            task_name="realtime.tasks.add",
            owner_id=owner.pk if owner else None,
            args=[1, 2],
            kwargs={},
        )
    )
    return task_id


def started(task_id: str) -> None:
    record(Transition(task_id=task_id, state="STARTED", task_name="realtime.tasks.add", worker="w@h"))


def log_out(user: User, key: str) -> None:
    """Django's logout, as the logout view calls it, for the session ``key``."""
    request = RequestFactory().post("/accounts/logout/")
    request.session = SessionStore(session_key=key)
    request.user = user
    logout(request)


async def test_logout_closes_the_feeds_of_that_session_at_once() -> None:
    user = await sync_to_async(User.objects.create_user)("ada")
    key, other_key = await sync_to_async(log_in)(user), await sync_to_async(log_in)(user)
    async with feed(user, key) as ws, feed(user, other_key) as other:
        await still_serving(ws)
        await sync_to_async(log_out)(user, key)
        assert await closed_with(ws) == codes.CLOSE_UNAUTHENTICATED
        # Another session of the same user is not logged out.
        task_id = await sync_to_async(owned_task)(user)
        assert (await other.receive_json_from())["task_id"] == task_id


@pytest.mark.parametrize("change", [password_changed, deactivated, deleted])
async def test_a_periodic_check_ends_a_session_no_signal_reported(
    settings: Any, change: Callable[[User, str], None]
) -> None:
    settings.TASKSTORE_RECONCILE_INTERVAL = 0.1
    user = await sync_to_async(User.objects.create_user)("ada", password="an old password")
    key = await sync_to_async(log_in)(user)
    async with feed(user, key) as ws:
        await still_serving(ws)
        # With the receivers silenced, only the periodic check can notice.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sessions, "ask_to_check", lambda *args, **kwargs: None)
            await sync_to_async(change)(user, key)
        assert await closed_with(ws) == codes.CLOSE_UNAUTHENTICATED


@pytest.mark.parametrize("change", [password_changed, session_deleted])
async def test_without_a_signal_or_a_periodic_check_nothing_ends(change: Callable[[User, str], None]) -> None:
    user = await sync_to_async(User.objects.create_user)("ada", password="an old password")
    key = await sync_to_async(log_in)(user)
    async with feed(user, key) as ws:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sessions, "ask_to_check", lambda *args, **kwargs: None)
            await sync_to_async(change)(user, key)
        task_id = await sync_to_async(owned_task)(user)
        # The control for the tests above: what closes a socket is the check, nothing else.
        assert (await ws.receive_json_from())["task_id"] == task_id


def set_password(user: User, key: str) -> None:
    fresh = User.objects.get(pk=user.pk)
    fresh.set_password("a new password")
    fresh.save()


def deactivate(user: User, key: str) -> None:
    fresh = User.objects.get(pk=user.pk)
    fresh.is_active = False
    fresh.save()


@pytest.mark.parametrize("change", [set_password, deactivate])
async def test_a_password_change_or_deactivation_closes_every_feed_of_the_user_at_once(
    change: Callable[[User, str], None],
) -> None:
    user = await sync_to_async(User.objects.create_user)("ada", password="an old password")
    keys = [await sync_to_async(log_in)(user) for _ in range(2)]
    async with feed(user, keys[0]) as first, feed(user, keys[1]) as second:
        await still_serving(first)
        await still_serving(second)
        await sync_to_async(change)(user, keys[0])
        assert await closed_with(first) == codes.CLOSE_UNAUTHENTICATED
        assert await closed_with(second) == codes.CLOSE_UNAUTHENTICATED


async def test_lost_staff_rights_close_the_staff_feed_with_4403_and_keep_token_and_own_subscriptions() -> (
    None
):
    staff = await sync_to_async(User.objects.create_user)("boss", is_staff=True)
    someone = await sync_to_async(User.objects.create_user)("someone")
    key = await sync_to_async(log_in)(staff)
    own, by_token, by_staff = (
        await sync_to_async(owned_task)(staff),
        await sync_to_async(owned_task)(someone),
        await sync_to_async(owned_task)(someone),
    )
    async with feed(staff, key) as staff_feed, tasks_socket(staff, key) as ws:
        await still_serving(staff_feed)
        for task_id in (own, by_staff):
            await ws.send_json_to({"type": "subscribe", "task_id": task_id})
            assert set(await ws.receive_json_from()) >= STAFF_FIELDS
        await ws.send_json_to({"type": "subscribe", "task_id": by_token, "token": make_token(by_token)})
        assert (await ws.receive_json_from())["version"] == 1

        def demote() -> None:
            fresh = User.objects.get(pk=staff.pk)
            fresh.is_staff = False
            fresh.save()

        await sync_to_async(demote)()
        assert await closed_with(staff_feed) == codes.CLOSE_FORBIDDEN
        ended = await ws.receive_json_from()
        assert (ended["type"], ended["code"], ended["task_id"]) == ("error", codes.FORBIDDEN, by_staff)
        for task_id in (by_staff, own, by_token):
            await sync_to_async(started)(task_id)
        seen = [await ws.receive_json_from() for _ in range(2)]
        assert sorted(f["task_id"] for f in seen) == sorted([own, by_token])
        assert all(not set(f) & STAFF_FIELDS for f in seen)
        assert await ws.receive_nothing(timeout=0.2)
        # The socket stays open; a new subscription is judged by what the session grants now.
        await ws.send_json_to({"type": "subscribe", "task_id": by_staff})
        assert (await ws.receive_json_from())["code"] == codes.FORBIDDEN


async def test_logout_ends_session_subscriptions_with_forbidden_and_token_ones_go_on() -> None:
    user = await sync_to_async(User.objects.create_user)("ada")
    key = await sync_to_async(log_in)(user)
    mine, by_token = await sync_to_async(owned_task)(user), await sync_to_async(owned_task)(user)
    group_id = str(uuid4())
    async with tasks_socket(user, key) as ws:
        await ws.send_json_to({"type": "subscribe", "task_id": mine})
        await ws.receive_json_from()
        await ws.send_json_to({"type": "subscribe", "task_id": by_token, "token": make_token(by_token)})
        await ws.receive_json_from()
        token = make_token(group_id, kind="group")
        await ws.send_json_to({"type": "subscribe", "group_id": group_id, "token": token})
        assert (await ws.receive_json_from())["version"] == 0
        await sync_to_async(log_out)(user, key)
        ended = await ws.receive_json_from()
        assert (ended["code"], ended["task_id"]) == (codes.FORBIDDEN, mine)
        assert "session" in ended["detail"]
        await sync_to_async(started)(mine)
        await sync_to_async(started)(by_token)
        frame = await ws.receive_json_from()
        assert (frame["task_id"], frame["state"]) == (by_token, "STARTED")
        assert await ws.receive_nothing(timeout=0.2)
        await ws.send_json_to({"type": "subscribe", "task_id": mine})
        assert (await ws.receive_json_from())["code"] == codes.FORBIDDEN


async def test_one_round_rechecks_every_socket_of_the_process_and_ends_only_the_ended_session(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.TASKSTORE_RECONCILE_INTERVAL = 0.1
    asked: list[int] = []
    real = queries.recheck_grants

    async def counted(grants: list[sessions.Grant]) -> dict[sessions.Grant, Viewer]:
        asked.append(len(grants))
        return await real(grants)

    monkeypatch.setattr(queries, "recheck_grants", counted)
    user = await sync_to_async(User.objects.create_user)("ada", password="an old password")
    keys = [await sync_to_async(log_in)(user) for _ in range(SOCKETS)]
    checks = watch.of_loop(watch.SessionWatch)
    async with AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(feed(user, key)) for key in keys]
        for ws in sockets:
            await still_serving(ws)
        rounds = checks.rounds
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sessions, "ask_to_check", lambda *args, **kwargs: None)
            await sync_to_async(session_deleted)(user, keys[0])
        assert await closed_with(sockets[0]) == codes.CLOSE_UNAUTHENTICATED
        for ws in sockets[1:]:
            await still_serving(ws)
        rounds = checks.rounds - rounds
    # Each round asked once for all the sockets' grants, where a check per socket asked once per
    # socket and interval.
    assert rounds >= 1
    assert max(asked) == SOCKETS
    assert len(asked) <= checks.rounds
