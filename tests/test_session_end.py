"""An ended session ends its sockets, end to end: a real daphne (periodic check every half
second), a real prefork worker, Redis, PostgreSQL, and clients on the ``websockets`` library.

Logging out (in another tab of the same session), changing the password through Django's own
view, being deactivated in the admin, and losing staff rights each end what the session
granted, within the periodic check's interval; a subscription opened with a token goes on.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from websockets.exceptions import ConnectionClosed

from realtime import tasks
from taskstore import compat
from taskstore.consumers import codes
from taskstore.models import TaskRecord
from taskstore.owner import owned_by
from taskstore.tokens import make_token
from tests.live.client import Socket, off_loop, session_cookie, websocket
from tests.live.settings import TASKSTORE_RECONCILE_INTERVAL as INTERVAL
from tests.support.markers import REAL_SERVICES
from tests.support.processes import ManagedProcess, daphne

pytestmark = REAL_SERVICES

# A socket whose session ended is closed within one interval of the periodic check; the rest is
# slack for a loaded machine (the signals usually close it at once).
DEADLINE = INTERVAL + 1.5
STAFF_FIELDS = {"traceback", "args", "kwargs"}
OLD_PASSWORD = "an old password, long enough"
NEW_PASSWORD = "a new password, longer than that"


@pytest.fixture(scope="module")
def port(service_env: dict[str, str]) -> Iterator[int]:
    proc: ManagedProcess
    proc, port = daphne({**service_env, "DJANGO_SETTINGS_MODULE": "tests.live.settings"})
    yield port
    proc.stop()


# --- HTTP as a browser does it ---------------------------------------------------------------------


def request(
    port: int, method: str, path: str, cookies: dict[str, str], form: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    """``(status, cookies set)`` of one request to daphne; redirects are not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    body = None
    if form is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode({**form, "csrfmiddlewaretoken": cookies["csrftoken"]})
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        set_cookies = {}
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            set_cookies[name] = rest.split(";", 1)[0]
        return response.status, set_cookies
    finally:
        connection.close()


def browser_cookies(port: int, session: str) -> dict[str, str]:
    """The session cookie and the CSRF cookie the login page sets, as a browser holds them."""
    _, set_cookies = request(port, "GET", "/accounts/login/", {})
    return {settings.SESSION_COOKIE_NAME: session, "csrftoken": set_cookies["csrftoken"]}


def admin_saves_user(port: int, admin_session: str, user: User, **flags: bool) -> None:
    """Save ``user`` through the admin's change form with the checkboxes ``flags`` (others off)."""
    form = {
        "username": user.username,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "_save": "Save",
        **{name: "on" for name, on in flags.items() if on},
    }
    cookies = browser_cookies(port, admin_session)
    status, _ = request(port, "POST", f"/admin/auth/user/{user.pk}/change/", cookies, form)
    assert status == 302, "the admin did not accept the change"


# --- tasks and sockets -------------------------------------------------------------------------------


def hashed(password: str) -> str:
    """``password`` as daphne's settings can check it (the test settings hash with MD5 only)."""
    return PBKDF2PasswordHasher().encode(password, "testsalt", iterations=1000)


def send(task: Any, owner: User, *args: Any) -> str:
    with owned_by(owner):
        return str(task.delay(*args).id)


def state_of(task_id: str) -> str | None:
    return TaskRecord.objects.filter(task_id=task_id).values_list("state", flat=True).first()


async def frames_until_closed(socket: Socket, timeout: float = DEADLINE) -> tuple[list[dict[str, Any]], int]:
    """The frames a socket receives until it is closed, and the close code; fails at the deadline."""
    frames: list[dict[str, Any]] = []
    try:
        async with compat.timeout(timeout):
            while True:
                frames.append(await socket.receive(timeout=timeout))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return frames, closed.rcvd.code
    except TimeoutError:
        raise AssertionError(f"the socket was still open {timeout}s later") from None


def task_ids(frames: list[dict[str, Any]]) -> set[str]:
    return {f["task_id"] for f in frames if f.get("type") == "task.update"}


async def witnessed(witness: Socket, task_id: str) -> None:
    """Wait until ``witness`` (a feed that may see ``task_id``) saw it finish: it was sent and pushed."""
    await witness.until(lambda f: f.get("task_id") == task_id and f.get("state") == "SUCCESS")


# --- the tests -------------------------------------------------------------------------------------


async def test_logout_in_another_tab_closes_the_feed_and_ends_session_subscriptions_but_not_token_ones(
    worker: Any, port: int
) -> None:
    user = await off_loop(User.objects.create_user, "ada")
    cookie, another_browser = (
        await off_loop(session_cookie, user),
        await off_loop(session_cookie, user),
    )
    by_session = await off_loop(send, tasks.sleep, user, 1.5)
    by_token = await off_loop(send, tasks.sleep, user, 2.5)
    async with (
        websocket(port, "/ws/feed/", cookie) as feed,
        websocket(port, cookie=cookie) as subscriptions,
        websocket(port, "/ws/feed/", another_browser) as witness,
    ):
        await subscriptions.send({"type": "subscribe", "task_id": by_session})
        await subscriptions.until(lambda f: f.get("task_id") == by_session)
        await subscriptions.send({"type": "subscribe", "task_id": by_token, "token": make_token(by_token)})
        await subscriptions.until(lambda f: f.get("task_id") == by_token)

        cookies = await off_loop(browser_cookies, port, cookie)
        status, _ = await off_loop(request, port, "POST", "/accounts/logout/", cookies, {})
        assert status == 302  # LOGOUT_REDIRECT_URL
        logged_out = time.monotonic()
        after = await off_loop(send, tasks.add, user, 1, 2)

        frames, code = await frames_until_closed(feed)
        assert code == codes.CLOSE_UNAUTHENTICATED
        assert time.monotonic() - logged_out < DEADLINE
        await witnessed(witness, after)
        assert after not in task_ids(frames)

        seen = await subscriptions.until(
            lambda f: f.get("task_id") == by_token and f.get("state") == "SUCCESS"
        )
        ended = [i for i, f in enumerate(seen) if f["type"] == "error"]
        assert len(ended) == 1
        assert (seen[ended[0]]["code"], seen[ended[0]]["task_id"]) == ("forbidden", by_session)
        assert by_session not in task_ids(seen[ended[0] :])
        assert await off_loop(state_of, by_session) == "SUCCESS"  # it ran to its end, unseen
        # The token subscription saw every version up to the end.
        versions = [f["version"] for f in seen if f.get("task_id") == by_token]
        assert versions == list(range(versions[0], versions[-1] + 1))

        # The socket stays open, and the session opens nothing more.
        await subscriptions.send({"type": "subscribe", "task_id": after})
        assert (await subscriptions.receive())["code"] == "forbidden"


async def test_a_password_change_closes_every_socket_of_the_older_sessions(worker: Any, port: int) -> None:
    user = await off_loop(User.objects.create_user, "bea", password=None)
    user.password = hashed(OLD_PASSWORD)
    await off_loop(user.save)
    root = await off_loop(User.objects.create_user, "root", is_staff=True)
    older = [await off_loop(session_cookie, user) for _ in range(2)]
    current = await off_loop(session_cookie, user)
    async with (
        websocket(port, "/ws/feed/", older[0]) as first,
        websocket(port, "/ws/feed/", older[1]) as second,
        websocket(port, "/ws/feed/", current) as changer,
        websocket(port, "/ws/feed/", await off_loop(session_cookie, root)) as witness,
    ):
        for socket in (first, second, changer):
            await socket.still_serving()
        cookies = await off_loop(browser_cookies, port, current)
        form = {"old_password": OLD_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
        status, set_cookies = await off_loop(
            request, port, "POST", "/accounts/password_change/", cookies, form
        )
        assert status == 302, "the password change was refused"
        changed = time.monotonic()
        after = await off_loop(send, tasks.add, user, 2, 3)
        # Django keeps the browser that changed the password logged in under a new session key;
        # the sockets it opened with the old key end like the rest and reconnect with the new one.
        renewed = set_cookies[settings.SESSION_COOKIE_NAME]
        assert renewed != current
        for socket in (first, second, changer):
            frames, code = await frames_until_closed(socket)
            assert code == codes.CLOSE_UNAUTHENTICATED
            assert after not in task_ids(frames)
        assert time.monotonic() - changed < DEADLINE
        await witnessed(witness, after)
        async with websocket(port, "/ws/feed/", renewed) as reconnected:
            again = await off_loop(send, tasks.add, user, 3, 4)
            frames = await reconnected.until_terminal(again)
            assert frames[-1]["result"] == 7


@pytest.fixture
def admin_port(service_env: dict[str, str]) -> Iterator[int]:
    """A daphne of its own: the admin caches content type ids, which the flush between tests renumbers."""
    proc: ManagedProcess
    proc, port = daphne({**service_env, "DJANGO_SETTINGS_MODULE": "tests.live.settings"})
    yield port
    proc.stop()


async def test_deactivation_in_the_admin_closes_the_users_sockets(worker: Any, admin_port: int) -> None:
    port = admin_port
    user = await off_loop(User.objects.create_user, "cid")
    root = await off_loop(User.objects.create_superuser, "root", password=OLD_PASSWORD)
    admin_session = await off_loop(session_cookie, root)
    cookie = await off_loop(session_cookie, user)
    async with (
        websocket(port, "/ws/feed/", cookie) as feed,
        websocket(port, "/ws/feed/", admin_session) as witness,
    ):
        await feed.still_serving()
        await off_loop(admin_saves_user, port, admin_session, user, is_active=False)
        deactivated = time.monotonic()
        assert not (await off_loop(User.objects.get, pk=user.pk)).is_active
        after = await off_loop(send, tasks.add, user, 1, 1)
        frames, code = await frames_until_closed(feed)
        assert code == codes.CLOSE_UNAUTHENTICATED
        assert time.monotonic() - deactivated < DEADLINE
        await witnessed(witness, after)
        assert after not in task_ids(frames)


async def test_lost_staff_rights_close_the_staff_feed_and_token_subscriptions_go_on(
    worker: Any, port: int
) -> None:
    staff = await off_loop(User.objects.create_user, "dee", is_staff=True)
    someone = await off_loop(User.objects.create_user, "eve")
    cookie = await off_loop(session_cookie, staff)
    by_staff_rights = await off_loop(send, tasks.sleep, someone, 1.5)
    own_by_token = await off_loop(send, tasks.sleep, staff, 2.5)
    async with (
        websocket(port, "/ws/feed/", cookie) as staff_feed,
        websocket(port, cookie=cookie) as subscriptions,
    ):
        await subscriptions.send({"type": "subscribe", "task_id": by_staff_rights})
        assert set(await subscriptions.receive()) >= STAFF_FIELDS
        token = make_token(own_by_token)
        await subscriptions.send({"type": "subscribe", "task_id": own_by_token, "token": token})
        assert set(await subscriptions.receive()) >= STAFF_FIELDS
        # The staff feed may show the running tasks' transitions, or a worker coming online, first.
        await staff_feed.still_serving(pushes_may_come_first=True)

        # From another process than the server (a shell, a management command): the signal
        # reaches the server through the channel layer.
        staff.is_staff = False
        await off_loop(staff.save)
        removed = time.monotonic()
        _, code = await frames_until_closed(staff_feed)
        assert code == codes.CLOSE_FORBIDDEN
        assert time.monotonic() - removed < DEADLINE

        seen = await subscriptions.until(
            lambda f: f.get("task_id") == own_by_token and f.get("state") == "SUCCESS"
        )
        ended = next(i for i, f in enumerate(seen) if f["type"] == "error")
        assert (seen[ended]["code"], seen[ended]["task_id"]) == ("forbidden", by_staff_rights)
        assert by_staff_rights not in task_ids(seen[ended:])
        # Once the rights are gone, the token subscription shows what a non-staff user sees.
        assert not set(seen[-1]) & STAFF_FIELDS
        # The user's own feed is still theirs to open.
        async with websocket(port, "/ws/feed/", cookie) as own_feed:
            await own_feed.still_serving()


async def test_a_session_that_ends_with_no_signal_is_noticed_by_the_periodic_check(port: int) -> None:
    user = await off_loop(User.objects.create_user, "fay")
    cookie = await off_loop(session_cookie, user)
    async with websocket(port, "/ws/feed/", cookie) as feed:
        await feed.still_serving()
        # As clearsessions or a direct delete would: no logout, no signal.
        await off_loop(lambda: Session.objects.filter(session_key=cookie).delete())
        deleted = time.monotonic()
        _, code = await frames_until_closed(feed)
        assert code == codes.CLOSE_UNAUTHENTICATED
        assert time.monotonic() - deleted < DEADLINE
