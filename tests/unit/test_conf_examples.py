"""Every example in conf/ parses and applies cleanly, as a user copies it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nss.cli import parse_args
from nss.config_apply import apply_streaming_config, nats_config
from nss.stores.limits import validate

CONF = Path(__file__).resolve().parents[2] / "conf"
EXAMPLES = sorted(CONF.glob("*.conf"))


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"standalone-memory.conf", "ft-file-nfs.conf", "partition-foo.conf"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads(path: Path, tmp_path: Path) -> None:
    parsed = parse_args(["-sc", str(path)])
    opts = parsed.options
    apply_streaming_config(opts, str(path), parsed.explicit)
    validate(opts.streaming.store_limits)
    assert opts.streaming.cluster_id
    # the embedded nats-server gets the NATS keys only
    nats_conf = nats_config(str(path), drop_monitor=True)
    assert nats_conf
    assert "streaming" not in nats_conf


def test_memory_example_values() -> None:
    path = CONF / "standalone-memory.conf"
    parsed = parse_args(["-sc", str(path)])
    opts = parsed.options
    apply_streaming_config(opts, str(path), parsed.explicit)
    lim = opts.streaming.store_limits
    assert lim.max_bytes == 1024**3
    assert lim.max_age == 24 * 3600
    assert lim.per_channel["orders.>"].max_msgs == -1  # explicit 0: unlimited
    assert opts.streaming.hb_interval == 30.0


def test_flags_win_over_the_file() -> None:
    path = CONF / "standalone-memory.conf"
    parsed = parse_args(["-sc", str(path), "-cid", "other", "-mm", "5"])
    opts = parsed.options
    apply_streaming_config(opts, str(path), parsed.explicit)
    assert opts.streaming.cluster_id == "other"
    assert opts.streaming.store_limits.max_msgs == 5
