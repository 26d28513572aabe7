"""Celery's own integration suite run against taskstore's result backend and against Redis.

``scripts/celery-conformance`` drives it (:mod:`tests.celery_suite.run`); :mod:`.plugin` is the
pytest plugin loaded into Celery's suite. Not part of the default test run: it takes minutes.
"""
