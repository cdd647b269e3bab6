"""A tiny immutable record for the sampler child's data (its config, the frame layout).

The sampler child starts on every ``gilwise.monitor()``; importing ``dataclasses`` and
``typing`` (with ``inspect``, ``re`` and friends) was most of its ~55 ms start, so the
modules the child imports use this instead and plain dicts on the wire.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    R = TypeVar("R", bound="Record")

REQUIRED = object()


class Record:
    """Fields and defaults in ``FIELDS`` ((name, default) pairs, REQUIRED for none); a
    subclass lists the same names in ``__slots__``. Immutable, compared by value."""

    __slots__: tuple[str, ...] = ()
    FIELDS: tuple[tuple[str, Any], ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        names = [name for name, _ in self.FIELDS]
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} fields, got {len(args)}")
        values = dict(zip(names, args))
        for name in kwargs:
            if name not in names:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            if name in values:
                raise TypeError(f"{type(self).__name__} got {name!r} twice")
        values.update(kwargs)
        for name, default in self.FIELDS:
            value = values.get(name, default)
            if value is REQUIRED:
                raise TypeError(f"{type(self).__name__} needs the field {name!r}")
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use .replace({name}=...)")

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _ in self.FIELDS}

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        return cls(**data)

    def replace(self: R, **changes: Any) -> R:
        return type(self)(**{**self.to_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.to_dict().items())
        return f"{type(self).__name__}({fields})"
