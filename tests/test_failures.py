"""The task document's ``error`` for what a task raised, however Celery hands it over."""

from __future__ import annotations

from billiard.einfo import ExceptionWithTraceback

from taskstore.failures import error_from_celery, error_from_exception


def test_an_exception_from_a_pool_child_is_named_by_what_the_task_raised() -> None:
    # A prefork child sends its parent the exception wrapped with the traceback's text.
    wrapped = ExceptionWithTraceback(ValueError("boom"), "Traceback (most recent call last): ...")
    assert error_from_exception(wrapped) == {"type": "ValueError", "message": "boom"}
    assert error_from_celery(wrapped) == {"type": "ValueError", "message": "boom"}


def test_a_plain_exception_and_celerys_serialised_form() -> None:
    assert error_from_exception(KeyError("k")) == {"type": "KeyError", "message": "'k'"}
    serialised = {"exc_type": "myapp.errors.Declined", "exc_message": ["card", 3], "exc_module": "myapp"}
    assert error_from_celery(serialised) == {"type": "Declined", "message": "('card', 3)"}
