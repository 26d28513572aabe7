"""Signed capabilities: a token lets its holder see one task (or group) and nothing else."""

from __future__ import annotations

from django.core import signing

from taskstore import conf

_TASK_SALT = "taskstore.task-token"
_GROUP_SALT = "taskstore.group-token"


def _signer(kind: str) -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=_GROUP_SALT if kind == "group" else _TASK_SALT)


def make_token(identifier: str, kind: str = "task") -> str:
    """Return a token for the task (or, with ``kind="group"``, the group) ``identifier``."""
    signed = _signer(kind).sign(identifier)
    return signed[len(identifier) + 1 :]


def check_token(identifier: str, token: str | None, kind: str = "task") -> bool:
    """Whether ``token`` is a valid, unexpired token for ``identifier``."""
    if not token or not isinstance(token, str):
        return False
    try:
        _signer(kind).unsign(f"{identifier}:{token}", max_age=conf.token_max_age())
    except signing.BadSignature:
        return False
    return True
