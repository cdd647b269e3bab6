"""The public surface: ``__all__``, the lazy table and the type-checking imports agree; every
public name resolves, reports ``gilwise.X`` as its module and still pickles; ``py.typed``
ships. Renaming an internal module without updating gilwise/__init__.py fails here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gilwise

INIT_PATH = Path(gilwise.__file__)

# Modules without a leading underscore that are public on purpose.
PUBLIC_MODULES = {
    "gilwise",
    "gilwise.errors",
    "gilwise.pipeline",
    "gilwise.probe",
    "gilwise.report",
    "gilwise.backends",
    "gilwise.demo",
    "gilwise.cli",
    "gilwise.probe.cli",
    "gilwise.demo.cli",
    "gilwise.__main__",
}
# Internal modules still to be renamed with a leading underscore (issue 13, item 8). Remove
# an entry when its rename lands: the test below fails on entries that no longer exist.
PENDING_RENAME: set[str] = set()


def _type_checking_imports() -> dict[str, str]:
    """Name -> "module:attribute" for every import under ``if TYPE_CHECKING:``."""
    tree = ast.parse(INIT_PATH.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if not (isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"):
            continue
        for statement in node.body:
            if not isinstance(statement, ast.ImportFrom):
                continue
            module = statement.module or ""
            if statement.level:
                module = "gilwise" + ("." + module if module else "")
            if module == "typing":
                continue
            for alias in statement.names:
                public = alias.asname or alias.name
                assert alias.asname == alias.name, (
                    f"write `import {alias.name} as {alias.name}` so strict type checkers "
                    "treat it as a re-export"
                )
                if statement.module is None:  # `from . import errors`: a module
                    found[public] = f"{module}.{alias.name}:"
                else:
                    found[public] = f"{module}:{alias.name}"
    return found


def test_all_lazy_table_and_type_checking_imports_agree() -> None:
    lazy = dict(gilwise._LAZY)
    assert set(gilwise.__all__) == set(lazy) | {"__version__"}
    assert _type_checking_imports() == lazy
    assert gilwise.__all__ == sorted(gilwise.__all__, key=lambda n: (n[0].islower(), n))


def _fresh_python(code: str) -> str:
    """What ``code`` printed in a fresh interpreter (nothing imported yet)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_public_name_resolves_in_a_fresh_interpreter() -> None:
    # A fresh interpreter: nothing imported yet, so every lazy entry is really loaded here.
    code = (
        "import gilwise\n"
        "for name in gilwise.__all__:\n"
        "    assert getattr(gilwise, name) is not None, name\n"
        "print(len(gilwise.__all__))\n"
    )
    assert int(_fresh_python(code)) == len(gilwise.__all__)


def test_lazy_entries_point_at_the_defining_module() -> None:
    for name, target in gilwise._LAZY.items():
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        if attr:
            assert getattr(module, attr) is getattr(gilwise, name), name


def test_import_gilwise_stays_cheap() -> None:
    code = (
        "import sys, gilwise\n"
        "heavy = [m for m in ('gilwise._executor', 'gilwise._model', 'gilwise.probe', "
        "'rich', 'IPython', 'concurrent.futures') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_unknown_attribute_names_the_module() -> None:
    with pytest.raises(AttributeError, match="module 'gilwise' has no attribute 'Exectuor'"):
        gilwise.Exectuor  # type: ignore[attr-defined]  # noqa: B018


def test_dir_lists_the_public_names() -> None:
    assert set(gilwise.__all__) <= set(dir(gilwise))


@pytest.mark.parametrize("name", [n for n in gilwise.__all__ if n[0].isupper()] + ["map"])
def test_exported_classes_and_functions_report_the_public_module(name: str) -> None:
    value = getattr(gilwise, name)
    assert value.__module__ == "gilwise"
    assert value.__qualname__ == name
    if isinstance(value, type):
        assert repr(value) == f"<class 'gilwise.{name}'>"


def test_methods_follow_their_class() -> None:
    assert gilwise.Executor.submit.__module__ == "gilwise"
    assert gilwise.Executor.submit.__qualname__ == "Executor.submit"
    assert gilwise.Pipeline.map.__module__ == "gilwise"


def test_public_subpackage_names_report_the_subpackage() -> None:
    assert gilwise.pipeline.Retry.__module__ == "gilwise.pipeline"
    assert repr(gilwise.pipeline.Retry) == "<class 'gilwise.pipeline.Retry'>"
    # Pipeline is exported at the top level too: the top level wins, whatever the order.
    assert gilwise.pipeline.Pipeline.__module__ == "gilwise"


def test_exported_objects_still_pickle_by_reference() -> None:
    error = gilwise.WorkerCrashedError("worker died")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is gilwise.WorkerCrashedError
    assert str(again) == "worker died"
    assert pickle.loads(pickle.dumps(gilwise.Profile)) is gilwise.Profile
    assert pickle.loads(pickle.dumps(gilwise.map)) is gilwise.map


@pytest.mark.slow
def test_the_wheel_ships_py_typed_and_the_pytest_plugin(tmp_path: Path) -> None:
    pytest.importorskip("hatchling", reason="hatchling (the build backend) is in the dev extra")
    root = INIT_PATH.parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(root)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("gilwise-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        entry_text = archive.read(entry_points).decode()
    assert "gilwise/py.typed" in names
    assert "[pytest11]\ngilwise = gilwise._pytest_plugin" in entry_text


def test_internal_modules_are_underscored() -> None:
    # Walk the package's files (no import: demo and backends pull in optional extras).
    root = INIT_PATH.parent
    unexpected = []
    seen = set()
    for info in pkgutil.walk_packages([str(root)], prefix="gilwise."):
        seen.add(info.name)
        private = any(part.startswith("_") for part in info.name.split("."))
        if not private and info.name not in PUBLIC_MODULES | PENDING_RENAME:
            unexpected.append(info.name)
    assert not unexpected, (
        f"public-looking modules {unexpected}: name internal modules with a leading underscore "
        "(or list a deliberately public one in PUBLIC_MODULES)"
    )
    stale = sorted(PENDING_RENAME - seen)
    assert not stale, f"{stale} were renamed: remove them from PENDING_RENAME"


def test_every_public_callable_has_a_docstring_and_hints() -> None:
    for name in gilwise.__all__:
        value = getattr(gilwise, name)
        if inspect.ismodule(value) or name == "__version__":
            continue
        assert inspect.getdoc(value), f"gilwise.{name} has no docstring"
        if inspect.isfunction(value):
            hints = value.__annotations__
            assert "return" in hints, f"gilwise.{name} has no return annotation"


def test_type_hints_of_exported_classes_still_resolve() -> None:
    # Their module now reads "gilwise", where "PythonInfo" or "Optional" cannot be looked up:
    # the annotations were resolved before the move (dataclass tools rely on this).
    import typing

    for cls in (gilwise.Profile, gilwise.pipeline.RunStats, gilwise.pipeline.Retry):
        hints = typing.get_type_hints(cls)
        assert hints and not any(isinstance(hint, str) for hint in hints.values()), cls
    assert typing.get_type_hints(gilwise.Profile)["held_fraction"] == typing.Optional[float]


def test_running_work_does_not_import_what_it_does_not_use() -> None:
    # Every fresh worker interpreter and every user script pays gilwise's import: the
    # Executor and gilwise.map must not pull in asyncio (~30 ms), platform or sysconfig.
    code = (
        "import sys, gilwise\n"
        "gilwise.Executor, gilwise.map\n"
        "with gilwise.Executor('thread') as ex: assert ex.submit(abs, -1).result() == 1\n"
        "print(sorted(m for m in ('asyncio', 'platform', 'sysconfig') if m in sys.modules))\n"
    )
    out = _fresh_python(code)
    assert out.strip() == "[]", out
