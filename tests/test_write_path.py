"""Task, event and group rows are written by the write modules only (docs/reliability.md, "The
write path"): a scan of the taskstore package's source fails on a write anywhere else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import taskstore

PACKAGE = Path(taskstore.__file__).parent

# The modules that may write TaskRecord, TaskEvent and GroupRecord rows: the recorder (every
# transition, Celery's view of a task, group membership, forgetting a task), the group-row
# statements the recorder runs, and the deletion of what expired.
WRITE_MODULES = {"taskstore/recorder.py", "taskstore/groups.py", "taskstore/retention.py"}

GUARDED_MODELS = {"TaskRecord", "TaskEvent", "GroupRecord"}
WRITING_METHODS = {
    "save", "create", "get_or_create", "update_or_create", "update", "delete", "bulk_create",
    "bulk_update",
}  # fmt: skip
SQL_CALLS = {"execute", "executemany", "raw"}
WRITING_SQL = re.compile(r"\b(INSERT\s+INTO|UPDATE\s+\S+\s+(AS\s+\S+\s+)?SET|DELETE\s+FROM)\b", re.IGNORECASE)


# Queryset methods whose result is no longer rows (dicts, tuples, numbers): a name assigned from
# them is not a queryset or a row.
NOT_ROWS = {"values", "values_list", "count", "exists", "aggregate", "in_bulk"}


def _guarded_chain(node: ast.AST, names: set[str]) -> bool:
    """Whether a chain such as ``TaskRecord.objects.filter(...).exclude(...)`` starts at a guarded
    name (or passes a guarded model, as in ``models.TaskRecord.objects``) and still stands for rows."""
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            if node.attr in NOT_ROWS:
                return False
            if node.attr in GUARDED_MODELS:
                return True
            node = node.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return isinstance(node, ast.Name) and node.id in names


def _mentions(node: ast.AST | None, names: set[str]) -> bool:
    return node is not None and any(
        (isinstance(n, ast.Name) and n.id in names) or (isinstance(n, ast.Attribute) and n.attr in names)
        for n in ast.walk(node)
    )


def _guarded_names(tree: ast.Module) -> set[str]:
    """The names that stand for a guarded model, its querysets or its rows in this module: the
    models (as imported, aliases included), names assigned from them, and parameters annotated
    with them (``task: TaskRecord``, ``queryset: QuerySet[TaskRecord]``)."""
    names = set(GUARDED_MODELS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names |= {a.asname for a in node.names if a.name in GUARDED_MODELS and a.asname}
        elif isinstance(node, ast.arg) and _mentions(node.annotation, GUARDED_MODELS):
            names.add(node.arg)
    changed = True
    while changed:  # names assigned from guarded ones, until nothing new is found
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                bound, value, annotation = node.targets, node.value, None
            elif isinstance(node, ast.AnnAssign):
                bound, value, annotation = [node.target], node.value, node.annotation
            elif isinstance(node, (ast.For, ast.comprehension)):
                bound, value, annotation = [node.target], node.iter, None
            else:
                continue
            from_rows = value is not None and _guarded_chain(value, names)
            if not from_rows and not _mentions(annotation, GUARDED_MODELS):
                continue
            for target in bound:  # plain names only: ``values["x"] = ...`` binds no name
                for name in [target] if isinstance(target, ast.Name) else getattr(target, "elts", []):
                    if isinstance(name, ast.Name) and name.id not in names:
                        names.add(name.id)
                        changed = True
    return names


def _strings(tree: ast.Module) -> list[str]:
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def writes(source: str) -> list[str]:
    """The writes to task, event or group rows in ``source``, as ``line: call`` (empty: none)."""
    tree = ast.parse(source)
    names = _guarded_names(tree)
    # Raw SQL that writes, in a module that deals with the guarded models at all.
    sql_writes = _mentions(tree, GUARDED_MODELS) and any(WRITING_SQL.search(s) for s in _strings(tree))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        method, receiver = node.func.attr, node.func.value
        if method in WRITING_METHODS and _guarded_chain(receiver, names):
            found.append(f"{node.lineno}: {ast.unparse(node.func)}()")
        elif method in SQL_CALLS and sql_writes:
            found.append(f"{node.lineno}: {ast.unparse(node.func)}() of writing SQL")
    return found


def test_only_the_write_modules_write_task_event_and_group_rows() -> None:
    violations = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE.parent).as_posix()
        if module in WRITE_MODULES or "/migrations/" in module:
            continue
        found = writes(path.read_text())
        if found:
            violations[module] = found
    assert violations == {}, "write through taskstore.recorder (docs/reliability.md, 'The write path')"


def test_the_write_modules_are_where_the_writes_are() -> None:
    # A stale list would let a module keep a permission it no longer uses.
    for module in WRITE_MODULES:
        assert writes((PACKAGE.parent / module).read_text()), f"{module} writes nothing: take it off the list"


PLANTED = """
from django.db import connection
from taskstore.models import GroupRecord, TaskEvent as Event, TaskRecord
from taskstore import models

def forget(task_id):
    TaskRecord.objects.filter(task_id=task_id).delete()

def rename(task: TaskRecord):
    task.task_name = "x"
    task.save()

def add(task_id):
    Event.objects.create(task_id=task_id, version=1)

def stale(cutoff):
    groups = GroupRecord.objects.filter(date_updated__lt=cutoff)
    groups.delete()

def bulk(rows):
    models.TaskRecord.objects.bulk_update(rows, ["state"])

def each(cutoff):
    for task in TaskRecord.objects.filter(date_done__lt=cutoff):
        task.delete()

def raw(task_id):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE taskstore_taskrecord SET state = 'X' WHERE task_id = %s", [task_id])
"""


def test_the_scan_finds_planted_writes() -> None:
    assert [line.split(": ", 1)[1] for line in writes(PLANTED)] == [
        "TaskRecord.objects.filter(task_id=task_id).delete()",
        "task.save()",
        "Event.objects.create()",
        "groups.delete()",
        "models.TaskRecord.objects.bulk_update()",
        "task.delete()",
        "cursor.execute() of writing SQL",
    ]


def test_the_scan_leaves_reads_and_other_objects_alone() -> None:
    source = """
from django.db import connection
from taskstore.models import TaskRecord
from taskstore.operations.models import WorkerRow

def read(task_id, meta):
    meta.update(state="x")
    WorkerRow.objects.filter(hostname="h").update(running=1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT state FROM taskstore_taskrecord WHERE task_id = %s", [task_id])
    row = TaskRecord.objects.filter(task_id=task_id).values("state").first()
    row.update(seen=True)
    return row
"""
    assert writes(source) == []
