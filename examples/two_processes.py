"""The seed's experiment after the change the verdict asks for: the same two loops, in two
processes. Compare with ``gilwise diff`` against a profile of examples/two_threads.py."""

from concurrent.futures import ProcessPoolExecutor


def count(n: int = 10_000_000) -> None:
    for _ in range(n):
        pass


if __name__ == "__main__":
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(count, [10_000_000] * 2))
