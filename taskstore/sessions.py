"""What a socket was granted through a Django session, checked again while the socket is open.

Channels authenticates a WebSocket once, at the handshake (channels #1324), so on its own a
socket keeps streaming after its session ended: after a logout, a password change meant to lock
someone out, the user's deactivation, or the loss of staff rights. Each consumer therefore keeps
the :class:`Grant` it opened with and checks it again

* every TASKSTORE_RECONCILE_INTERVAL, with :func:`recheck_many`, for all the sockets of a process
  at once (taskstore.consumers.watch), which reads the sessions and the users again from where
  Django keeps them: two queries with database sessions and Django's ModelBackend, however many
  sockets; and
* at once, when one of the receivers below says so through the channel layer. A message only
  asks for a check; what the check finds in the database decides. The one exception is a
  logout: Django sends ``user_logged_out`` *before* it deletes the session, so the message names
  the session (by a hash of its key) and the sockets opened with it end without a look.

A socket whose answer changed reads its own grant again with :func:`recheck` (one query) before
it ends anything.

The receivers are connected when this module is imported (``TaskstoreConfig.ready``).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from functools import partial
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
    user_logged_out,
)
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.exceptions import ValidationError
from django.db import router, transaction
from django.db.models import Subquery
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from taskstore.permissions import Viewer
from taskstore.publisher import publisher

# The channel-layer message type of "check your session now" (handled by ``taskstore_session``).
MESSAGE_SESSION = "taskstore.session"

# How long a logout waits for its message to leave for the channel layer.
LOGOUT_SEND_WAIT = 2.0

# The user fields whose change can end what a session grants. A save limited to other fields
# (``update_last_login`` at every login saves ``last_login`` only) asks for no check.
WATCHED_FIELDS = frozenset({"password", "is_active", "is_staff"})


@dataclass(frozen=True)
class Grant:
    """What a socket was given at its handshake by an authenticated user.

    ``session_key`` is None when the user did not come from a Django session (a project's own
    authentication middleware): then only the user row is checked again.
    """

    user_id: int
    staff: bool
    session_key: str | None

    @classmethod
    def of(cls, scope: dict[str, Any], viewer: Viewer) -> Grant | None:
        """The grant of a socket whose handshake ``scope`` made ``viewer``; None if anonymous."""
        if viewer.user_id is None:
            return None
        session = scope.get("session")
        key = getattr(session, "session_key", None) if session is not None else None
        return cls(user_id=viewer.user_id, staff=viewer.staff, session_key=key or None)

    @property
    def session_hash(self) -> str | None:
        """How a logout message names this grant's session (never the key itself)."""
        return session_hash(self.session_key) if self.session_key else None


def session_hash(session_key: str) -> str:
    """A digest of a session key, so channel-layer messages never carry a live credential."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def user_group(user_id: int) -> str:
    """The channel-layer group every socket of one user joins, to hear "check now"."""
    return f"taskstore.session.user.{user_id}"


# --- the check ---------------------------------------------------------------------------------


def recheck(grant: Grant) -> Viewer:
    """The viewer ``grant`` still makes: the same, without staff rights, or anonymous.

    Anonymous when the session no longer exists (logged out, expired, flushed), belongs to
    another user, was made with another password (its auth hash no longer matches, the check
    Django's ``get_user`` makes), or the user may no longer log in (``is_active`` False, for
    backends that refuse inactive users) or no longer exists. Never grants more than at the
    handshake: a user made staff since keeps a user's socket. Reads only; unlike ``get_user``
    it never flushes or rotates a session, which belongs to the browser.
    """
    return _viewer(grant, *_load(grant))


def recheck_many(grants: list[Grant]) -> dict[Grant, Viewer]:
    """:func:`recheck` for many grants at once (a process's periodic round): with database
    sessions and Django's ModelBackend, two queries however many grants, one for the users and
    one for their live sessions."""
    users = get_user_model()._default_manager.in_bulk({g.user_id for g in grants})
    keyed = {g.session_key for g in grants if g.session_key is not None}
    store, session_model = _session_store()
    encoded: dict[str, str] | None = None
    if keyed and session_model is not None:
        live = _live_sessions(session_model).filter(session_key__in=keyed)
        encoded = dict(live.values_list("session_key", "session_data"))
    found = {}
    for grant in grants:
        data = None
        if grant.session_key is not None:
            if encoded is None:
                # Cache, file and signed-cookie sessions: the session read costs no database query.
                data = store(grant.session_key).load()
            else:
                data = store().decode(encoded[grant.session_key]) if grant.session_key in encoded else {}
        found[grant] = _viewer(grant, users.get(grant.user_id), data)
    return found


def _viewer(grant: Grant, user: Any, data: dict[str, Any] | None) -> Viewer:
    """What ``grant`` still makes, given its user row (None: gone) and its session's data (None
    without a session, {} for a dead one)."""
    if user is None or (data is not None and not _session_authenticates(grant, user, data)):
        return Viewer()
    if data is None and not getattr(user, "is_active", True):
        return Viewer()
    return Viewer(user_id=grant.user_id, staff=grant.staff and Viewer.of(user).staff)


def _load(grant: Grant) -> tuple[Any, dict[str, Any] | None]:
    """The user row and the session's data (None without a session, {} for a dead one)."""
    users = get_user_model()._default_manager.filter(pk=grant.user_id)
    if grant.session_key is None:
        return users.first(), None
    store, session_model = _session_store()
    if session_model is not None:
        # One query: the user row with its live session's data beside it.
        live = _live_sessions(session_model).filter(session_key=grant.session_key).values("session_data")[:1]
        user = users.annotate(taskstore_session_data=Subquery(live)).first()
        encoded = getattr(user, "taskstore_session_data", None)
        return user, (store().decode(encoded) if encoded else {})
    # Cache, file and signed-cookie sessions: the session read costs no database query.
    return users.first(), store(grant.session_key).load()


def _session_store() -> tuple[Any, Any]:
    """The configured session store class, and its model when its sessions are rows the users'
    database can read in the same query (None: read each session through the store)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store, DatabaseSessionStore):
        session_model = store.get_model_class()
        if router.db_for_read(session_model) == router.db_for_read(get_user_model()):
            return store, session_model
    return store, None


def _live_sessions(session_model: Any) -> Any:
    """The sessions that have not expired."""
    return session_model.objects.filter(expire_date__gt=timezone.now())


def _session_authenticates(grant: Grant, user: Any, data: dict[str, Any]) -> bool:
    """Whether the session ``data`` still logs ``user`` in, as Django's ``get_user`` decides."""
    try:
        session_user = get_user_model()._meta.pk.to_python(data.get(SESSION_KEY))
    except ValidationError:
        return False
    backend_path = data.get(BACKEND_SESSION_KEY)
    if (
        session_user != grant.user_id
        or not isinstance(backend_path, str)
        or backend_path not in settings.AUTHENTICATION_BACKENDS
    ):
        return False
    backend = load_backend(backend_path)
    if isinstance(backend, ModelBackend) and type(backend).get_user is ModelBackend.get_user:
        # ModelBackend.get_user is the row read above plus this test; no need to read it again.
        if not backend.user_can_authenticate(user):
            return False
    else:
        user = backend.get_user(grant.user_id)
        if user is None:
            return False
    if not hasattr(user, "get_session_auth_hash"):
        return True
    stored = data.get(HASH_SESSION_KEY)
    if not stored:
        return False
    fallbacks = getattr(user, "get_session_auth_fallback_hash", lambda: ())()
    return any(constant_time_compare(stored, h) for h in (user.get_session_auth_hash(), *fallbacks))


# --- the receivers: "check now" ------------------------------------------------------------------


def ask_to_check(user_id: Any, ended_session: str | None = None) -> None:
    """Tell every socket of ``user_id`` to check its session now, once the transaction commits.

    ``ended_session`` names (by its key) a session that is ending: its sockets end at once, and
    the caller waits (a little) until the message has left, so that once a logout has answered,
    nothing published later can reach those sockets ahead of it.
    """
    if user_id is None:
        return
    message: dict[str, Any] = {"type": MESSAGE_SESSION}
    if ended_session:
        message["ended"] = session_hash(ended_session)
    # After the commit: the check must read the change, not the row as it was.
    send = partial(_send, user_group(int(user_id)), message, wait=bool(ended_session))
    transaction.on_commit(send, robust=True)


def _send(group: str, message: dict[str, Any], wait: bool) -> None:
    publisher.publish([(group, message)])
    if wait and not _on_event_loop():
        # The publisher sends from the server's loop (or a thread of its own): this thread may
        # wait for it. Code running on a loop (``alogout``) must not block it, and does not wait.
        publisher.flush(timeout=LOGOUT_SEND_WAIT)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """``user_logged_out``: end the sockets opened with the session being logged out."""
    session = getattr(request, "session", None)
    ask_to_check(getattr(user, "pk", None), getattr(session, "session_key", None))


def user_saved(
    sender: Any,
    instance: Any,
    created: bool = False,
    update_fields: Any = None,
    raw: bool = False,
    **kwargs: Any,
) -> None:
    """``post_save`` of a user: a new password, deactivation or lost staff rights may end grants."""
    if created or raw or (update_fields is not None and not WATCHED_FIELDS & set(update_fields)):
        return
    ask_to_check(instance.pk)


def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """``post_delete`` of a user: their sockets end."""
    ask_to_check(instance.pk)


user_logged_out.connect(logged_out, dispatch_uid="taskstore.sessions.logged_out")
post_save.connect(user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="taskstore.sessions.saved")
post_delete.connect(user_deleted, sender=settings.AUTH_USER_MODEL, dispatch_uid="taskstore.sessions.deleted")
