"""The sampler child's small records (probe/_record.py): values, immutability, clear errors."""

from __future__ import annotations

import pytest

from gilwise.probe._sampler import SamplerConfig


def test_defaults_round_trip_and_replace():
    config = SamplerConfig(pid=1, rate_hz=1000.0)
    assert config.gil_address is None and config.frame_every == 1
    assert SamplerConfig.from_dict(config.to_dict()) == config
    changed = config.replace(frame_every=4)
    assert changed.frame_every == 4 and config.frame_every == 1
    assert changed != config
    assert "frame_every=4" in repr(changed)


def test_records_are_immutable():
    config = SamplerConfig(pid=1, rate_hz=1000.0)
    with pytest.raises(AttributeError, match=r"immutable: use \.replace\(pid=\.\.\.\)"):
        config.pid = 2  # type: ignore[misc]


def test_missing_unknown_and_repeated_fields_are_named():
    with pytest.raises(TypeError, match="needs the field 'rate_hz'"):
        SamplerConfig(pid=1)
    with pytest.raises(TypeError, match="has no field 'rate'"):
        SamplerConfig(pid=1, rate_hz=1.0, rate=2)
    with pytest.raises(TypeError, match="got 'pid' twice"):
        SamplerConfig(1, 1000.0, pid=2)
