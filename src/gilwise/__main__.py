"""``python -m gilwise``: the same as the ``gilwise`` command."""

from gilwise.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
