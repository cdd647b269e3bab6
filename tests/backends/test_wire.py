"""How tasks are pickled for process workers: plain pickle where it is safe, cloudpickle else."""

from __future__ import annotations

import pickle
import sys

import _backend_tasks as tasks

from gilwise.backends._wire import task_dumps


def test_a_module_level_function_travels_by_plain_pickle() -> None:
    payload = task_dumps((tasks.add, (2, 3), {}))
    assert payload == pickle.dumps((tasks.add, (2, 3), {}), pickle.HIGHEST_PROTOCOL)
    fn, args, kwargs = pickle.loads(payload)
    assert fn(*args, **kwargs) == 5


def test_a_lambda_travels_by_value() -> None:
    payload = task_dumps((lambda x: x * 7, (6,), {}))
    fn, args, _ = pickle.loads(payload)
    assert fn(*args) == 42


def test_a_global_of_the_main_script_travels_by_value() -> None:
    # Plain pickle would send ``__main__.triple`` by name, which a worker that never ran the
    # main script (a spawned one) cannot look up: such tasks go by value.
    main = sys.modules["__main__"]

    def triple(x: int) -> int:
        return 3 * x

    triple.__module__ = "__main__"
    triple.__qualname__ = "gilwise_test_triple"
    main.gilwise_test_triple = triple  # type: ignore[attr-defined]
    try:
        payload = task_dumps((triple, (4,), {}))
    finally:
        del main.gilwise_test_triple  # type: ignore[attr-defined]
    fn, args, _ = pickle.loads(payload)  # no __main__.gilwise_test_triple to look up now
    assert fn(*args) == 12
