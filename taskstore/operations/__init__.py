"""The operations console: workers, queues, task statistics, control and Prometheus metrics.

Every piece keeps its state in the application's database, so each server and worker process
sees the same numbers and nothing is lost on a restart (docs/operations.md):

* :mod:`.workers`: the write path of worker rows (versioned, pushed on the staff feed);
* :mod:`.heartbeat`: the Celery worker signal handlers and the heartbeat thread;
* :mod:`.monitor`: the periodic loop one process at a time runs (lost workers, queue depths,
  metric tallies), under a lease row;
* :mod:`.brokers`: queue depths read from the broker, and purging;
* :mod:`.statistics`: per task name, over a window, computed by the database;
* :mod:`.actions`: control (revoke, terminate, re-run, purge), each recorded and pushed;
* :mod:`.metrics`: ``/metrics`` in Prometheus' text format.
"""
