"""``AsyncResult.get()`` raises what the task raised, as with Celery's Redis backend: the same class
(its own module, so ``except PaymentDeclined:`` catches it) with the same arguments, and Celery's
own rules for an exception it cannot rebuild. Every scenario runs against taskstore's backend and
against Redis, each with a real prefork worker, with the same expectations; the task document's
``error`` stays ``{"type", "message"}``."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import pytest
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery.exceptions import Reject, TaskRevokedError
from celery.result import AsyncResult
from celery.utils.serialization import UnpickleableExceptionWrapper

from taskstore.models import TaskRecord
from tests.support.backends import Gates, Target
from tests.support.markers import REAL_SERVICES
from tests.support.processes import wait_for
from tests.support.worker_tasks import PaymentDeclined

pytestmark = REAL_SERVICES


def _raised(result: AsyncResult, timeout: float = 30) -> BaseException:
    try:
        value = result.get(timeout=timeout)
    except Exception as exc:
        return exc
    raise AssertionError(f"get() returned {value!r} instead of raising")


def _document_error(task_id: str) -> dict[str, Any]:
    """The task document's error (with Redis the signal handlers may record it after get())."""

    def recorded() -> dict[str, Any] | None:
        return TaskRecord.objects.filter(task_id=task_id).values_list("error", flat=True).first()

    return wait_for(recorded, 10, f"the error of {task_id} recorded")


@pytest.mark.parametrize(
    ("task", "args", "cls", "exc_args"),
    [
        pytest.param(
            "tests.raise_payment_declined",
            ("card expired", 42),
            PaymentDeclined,
            ("card expired", 42),
            id="custom",
        ),
        pytest.param("tests.raise_builtin", ("missing",), KeyError, ("missing",), id="builtin"),
        pytest.param(
            "tests.raise_multi_argument",
            (),
            ValueError,
            ("bad value", 42, ["a", "b"], {"k": None}),
            id="multi-argument",
        ),
        pytest.param("tests.reject_for_good", (), Reject, ("rejected", False), id="reject"),
    ],
)
def test_get_raises_the_class_and_arguments_the_task_raised(
    target: Target, task: str, args: tuple[Any, ...], cls: type[BaseException], exc_args: tuple[Any, ...]
) -> None:
    result = target.send(task, *args)
    exc = _raised(result)
    assert type(exc) is cls
    assert exc.args == exc_args
    assert (result.state, result.failed(), result.ready()) == ("FAILURE", True, True)
    assert _document_error(result.id) == {"type": cls.__name__, "message": str(exc)}


def test_a_class_the_reader_cannot_import_is_made_up_as_celery_does(target: Target) -> None:
    result = target.send("tests.raise_from_worker_only_module")
    exc = _raised(result)
    # The class lives in a module only the worker imported: Celery makes a class of that name.
    assert "tests.support.worker_only_errors" not in sys.modules
    assert (type(exc).__name__, type(exc).__module__) == ("LedgerLocked", "celery.exceptions")
    assert exc.args == ("ledger 7 is locked",)
    assert _document_error(result.id) == {"type": "LedgerLocked", "message": "ledger 7 is locked"}


def test_an_exception_pickle_cannot_rebuild_comes_back_wrapped_as_celery_wraps_it(target: Target) -> None:
    result = target.send("tests.raise_not_rebuildable")
    exc = _raised(result)
    assert type(exc) is UnpickleableExceptionWrapper
    assert (exc.exc_module, exc.exc_cls_name, exc.exc_args, exc.text) == (
        "tests.support.worker_tasks",
        "NeedsTwoArguments",
        ("7: out of stock",),
        "NeedsTwoArguments('7: out of stock')",
    )
    # The document names the exception the task raised, not the wrapper.
    assert _document_error(result.id) == {"type": "NeedsTwoArguments", "message": "7: out of stock"}


def test_a_revoked_task_raises_celerys_task_revoked_error(target: Target, gates: Gates) -> None:
    gate = gates.new()
    result = target.send("tests.gated", gate)
    gates.running(gate)
    target.app.control.revoke(result.id, terminate=True)
    exc = _raised(result)
    assert type(exc) is TaskRevokedError
    assert exc.args == ("terminated",)
    assert result.state == "REVOKED"


def test_a_hard_time_limit_raises_time_limit_exceeded(target: Target, gates: Gates) -> None:
    gate = gates.new()
    result = target.send("tests.gated", gate, time_limit=1)
    exc = _raised(result)
    assert type(exc) is TimeLimitExceeded
    assert exc.args == (1,)
    assert result.state == "FAILURE"


def test_a_killed_pool_child_raises_worker_lost_error(target: Target, gates: Gates) -> None:
    gate = gates.new()
    result = target.send("tests.gated", gate)
    os.kill(gates.running(gate)["pid"], signal.SIGKILL)
    exc = _raised(result)
    assert type(exc) is WorkerLostError
    assert "signal 9 (SIGKILL)" in str(exc)
    assert result.state == "FAILURE"
