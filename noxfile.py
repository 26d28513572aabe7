"""The version matrix: the suite's tests that need no browser, on each supported Python and Django
pair, with the oldest and the newest Celery and Channels that pyproject.toml declares.

Each session installs the package as a user gets it (a wheel built from the sdist, with the
``redis`` extra) and runs pytest from a copy of the repository without ``taskstore/``, so the tests
and the worker and daphne processes they start import the installed package, never the working
tree. Everything the session does not vary is pinned by requirements.lock and
requirements-dev.lock, used as constraints.

Run it with ``scripts/matrix`` (which finds the pyenv interpreters); docs/development.md
("Version matrix") lists the sessions and their last results.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
# Under CI=true a missing interpreter fails the run; elsewhere its sessions skip with the reason.
nox.options.error_on_missing_interpreters = os.environ.get("CI", "").lower() == "true"
# uv must use the interpreters on PATH, never fetch one.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")

# Django's own support table (docs.djangoproject.com, "What Python version can I use with Django?").
DJANGO_PYTHONS = {
    "4.2": ("3.10", "3.11", "3.12"),
    "5.2": ("3.10", "3.11", "3.12", "3.13"),
    "6.0": ("3.12", "3.13"),
}

# The lower bounds of pyproject.toml's ranges; tests/test_packaging.py keeps the two in step.
OLDEST = {"celery": "5.7.0", "channels": "4.2.0", "channels-redis": "4.2.0"}

# Packages that move with the ones a session varies, so the lock files must not pin them there.
FOLLOW_DJANGO = {"django"}
FOLLOW_OLDEST = {"celery", "kombu", "billiard", "vine", "amqp", "redis", "channels", "channels-redis"}
# Locked releases that need a newer Python than the session's: there the resolver picks the
# newest release that installs (asgiref 3.13, autobahn 25.9, txaio 26, websockets 17 and
# zope.interface 8.7 need Python 3.11, and pycparser 3.12; so do hypothesis 6.170 and
# schemathesis 4.32, and the schemathesis that installs there wants an older jsonschema-rs).
FOLLOW_PYTHON = {
    "3.10": {
        "asgiref",
        "autobahn",
        "hypothesis",
        "jsonschema-rs",
        "pycparser",
        "schemathesis",
        "txaio",
        "websockets",
        "zope-interface",
    },
}

# `scripts/matrix --paired` (nox -t paired) runs each (Python, Django) pair once, the stacks
# alternating so that every Python and every Django meets both the oldest and the newest Celery
# and Channels: half the time of the whole cross product (see docs/development.md).
# `scripts/matrix --corners` (what CI runs): the oldest Python and Django with the oldest stack,
# the newest with the newest, and the middle LTS on its middle Python with the oldest stack.
CORNERS = {("3.10", "4.2", "oldest"), ("3.12", "5.2", "oldest"), ("3.13", "6.0", "newest")}
PAIRED_OLDEST = {("3.10", "4.2"), ("3.11", "5.2"), ("3.12", "4.2"), ("3.12", "6.0"), ("3.13", "5.2")}

# What a session installs besides the package: the example project and the test tools.
EXAMPLE_DEPS = ["daphne", "whitenoise", "dj-database-url", "psycopg[binary]"]
TEST_DEPS = [
    "pytest",
    "pytest-django",
    "pytest-asyncio",
    "websockets",
    "uvicorn",
    "playwright",
    "django-celery-results",
    "pyyaml",
    "schemathesis",
]

# Not copied beside the tests: the package (installed instead) and local state.
NOT_COPIED = {"taskstore", ".git", ".venv", ".nox", "var", "build", "dist", "staticfiles", "test-artifacts"}


def _not_copied(directory: str, names: list[str]) -> set[str]:
    """copytree's ignore: NOT_COPIED at the top, egg-info and bytecode anywhere."""
    top = Path(directory) == ROOT
    return {n for n in names if (top and n in NOT_COPIED) or n == "__pycache__" or n.endswith(".egg-info")}


INSTALLED_CHECK = """
import sys, taskstore
print("taskstore from", taskstore.__file__)
sys.exit("site-packages" not in taskstore.__file__)
"""

# scripts/run builds and tests its own .venv with the locked versions; the main suite covers it.
# test_adoption builds the wheel from the working tree, which a session runs without (the session
# itself installs that wheel).
NOT_IN_MATRIX = ["--ignore=tests/test_embedded.py", "--ignore=tests/test_adoption.py"]


def _name(requirement: str) -> str:
    """The normalised project name of a ``name==version`` line."""
    return re.sub(r"[-_.]+", "-", re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].strip()).lower()


def _constraints(session: nox.Session, released: set[str]) -> Path:
    """The lock files as a constraints file, less the packages this session varies."""
    lines = []
    for lock in ("requirements.lock", "requirements-dev.lock"):
        for line in (ROOT / lock).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and _name(line) not in released:
                lines.append(line)
    path = Path(session.create_tmp()) / "constraints.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _newest(name: str) -> str:
    """The locked version of ``name``: the newest this project has taken in."""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#") and _name(line) == name:
            return line.split("==", 1)[1].strip()
    raise LookupError(f"{name} is not pinned in requirements.lock")


_built: list[Path] = []
# A folder of this nox run's own, so two runs never build over each other's wheel.
_dist = tempfile.TemporaryDirectory(prefix="taskstore-dist-")


def _wheel(session: nox.Session) -> Path:
    """The package's wheel, built from its sdist once per nox run (as a user's pip gets it)."""
    if not _built:
        # `python -m build` makes the sdist, then the wheel from the unpacked sdist: a file the
        # sdist forgot fails here, not on a user's machine.
        session.run(
            sys.executable, "-m", "build", "--outdir", _dist.name, str(ROOT), external=True, silent=True
        )
        (wheel,) = Path(_dist.name).glob("*.whl")
        _built.append(wheel)
    return _built[0]


def _combinations() -> list[nox.Param]:
    """Every supported (Python, Django) pair with each stack; the paired half tagged."""
    params = []
    for django, pythons in DJANGO_PYTHONS.items():
        for python in pythons:
            for stack in ("oldest", "newest"):
                paired = ((python, django) in PAIRED_OLDEST) == (stack == "oldest")
                tags = ["paired"] if paired else []
                if (python, django, stack) in CORNERS:
                    tags.append("corners")
                params.append(
                    nox.param(python, django, stack, id=f"{python}-django{django}-{stack}", tags=tags)
                )
    return params


@nox.session
@nox.parametrize(["python", "django", "stack"], _combinations())
def tests(session: nox.Session, django: str, stack: str) -> None:
    """Install the package and its stack for one combination; run the tests that need no browser."""
    released = FOLLOW_DJANGO | FOLLOW_PYTHON.get(str(session.python), set())
    if stack == "oldest":
        released |= FOLLOW_OLDEST
        versions = OLDEST
    else:
        versions = {name: _newest(name) for name in OLDEST}
    # celery[redis]: the example project's broker transport, in the redis-py range Celery names.
    wanted = [f"Django~={django}.0", *(f"{name}=={v}" for name, v in versions.items())]
    wanted = [w.replace("celery==", "celery[redis]==") for w in wanted]
    constraints = _constraints(session, released)
    wheel = _wheel(session)
    session.install(
        "-c",
        str(constraints),
        f"django-taskstore-live[redis] @ {wheel.as_uri()}",
        *wanted,
        *EXAMPLE_DEPS,
        *TEST_DEPS,
    )
    if session.venv_backend == "uv":
        session.run("uv", "pip", "freeze", external=True)
    else:
        session.run("python", "-m", "pip", "freeze")

    tree = Path(session.create_tmp()) / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(ROOT, tree, ignore=_not_copied)
    session.chdir(tree)
    # The tests must import the installed package: stop here if the copy could shadow it.
    session.run("python", "-c", INSTALLED_CHECK)

    slug = f"py{str(session.python).replace('.', '')}_dj{django.replace('.', '')}_{stack}"
    env = {
        # Each session gets a test database of its own (the run's name, if any, as the prefix).
        "TASKSTORE_TEST_DB": f"{os.environ.get('TASKSTORE_TEST_DB', 'test_taskstore')}_{slug}",
        "TASKSTORE_VAR_DIR": str(Path(session.create_tmp()) / "var"),
    }
    session.run("python", "-m", "pytest", "-m", "not browser", *NOT_IN_MATRIX, *session.posargs, env=env)


# Versions outside the declared ranges, each with the Python it is tried on.
UNSUPPORTED_PYTHON = "3.9"
UNSUPPORTED_DJANGO = {"3.11": "Django==4.1.13", "3.12": "Django==6.1.3"}


# Tagged so that `scripts/matrix --paired` and `--corners` run it too.
@nox.session(python=False, tags=["paired", "corners"])
def refusals(session: nox.Session) -> None:
    """pip refuses the package on an unsupported Python and beside an unsupported Django."""
    wheel = _wheel(session)
    tmp = Path(session.create_tmp())

    python = shutil.which(f"python{UNSUPPORTED_PYTHON}")
    if python is None:
        session.warn(f"Python {UNSUPPORTED_PYTHON} not found: its refusal is not checked (pyenv install it)")
    else:
        venv = tmp / f"python{UNSUPPORTED_PYTHON}"
        session.run(python, "-m", "venv", "--clear", str(venv), external=True)
        # Without --no-deps pip may first fail on a dependency that also left Python 3.9 behind
        # (celery>=5.7): the wheel's own Requires-Python is what this checks.
        said = _refused(session, str(venv / "bin" / "python"), "--no-deps", str(wheel))
        if "requires a different Python" not in said or ">=3.10" not in said:
            session.error(f"pip on Python {UNSUPPORTED_PYTHON} failed for another reason:\n{said}")

    for version, django in UNSUPPORTED_DJANGO.items():
        python = shutil.which(f"python{version}")
        if python is None:
            session.warn(f"Python {version} not found: {django} is not tried")
            continue
        venv = tmp / f"python{version}"
        session.run(python, "-m", "venv", "--clear", str(venv), external=True)
        said = _refused(
            session, str(venv / "bin" / "python"), f"django-taskstore-live @ {wheel.as_uri()}", django
        )
        if "conflicting dependencies" not in said or not {"<6.1", ">=4.2"} <= set(
            re.findall(r"[<>=]+[\d.]+", said)
        ):
            session.error(f"pip refused {django} for another reason:\n{said}")


def _refused(session: nox.Session, python: str, *args: str) -> str:
    """Run a pip install that must fail; return what pip said."""
    said = session.run(
        python, "-m", "pip", "install", "--dry-run", *args, external=True, silent=True, success_codes=[1]
    )
    refusal = [line for line in (said or "").splitlines() if line.startswith("ERROR") or "depends on" in line]
    session.log("pip refused, as it should:\n%s", "\n".join(refusal))
    return said or ""
