"""NATS size and Go duration syntaxes (config.md §1.1)."""

from __future__ import annotations

import pytest

from nss.units import (
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1024", 1024),
        ("-1", -1),
        ("1k", 1000),
        ("1K", 1000),
        ("1kb", 1024),
        ("1KB", 1024),
        ("1ki", 1024),
        ("1KiB", 1024),
        ("2m", 2_000_000),
        ("2mb", 2 * 1024**2),
        ("2MiB", 2 * 1024**2),
        ("3g", 3 * 1000**3),
        ("3GB", 3 * 1024**3),
        ("1t", 1000**4),
        ("1tb", 1024**4),
        ("1p", 1000**5),
        ("1pb", 1024**5),
        ("1e", 1000**6),
        ("1eb", 1024**6),
        ("10 MB", 10 * 1024**2),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "xyz", "1.5", "1.5MB", "10XB", "MB", "8eb", "1 2"]
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("-0", 0),
        ("1s", 10**9),
        ("1.5s", 1_500_000_000),
        (".5s", 500_000_000),
        ("5.s", 5 * 10**9),
        ("250ms", 250_000_000),
        ("10us", 10_000),
        ("10\u00b5s", 10_000),
        ("10\u03bcs", 10_000),
        ("7ns", 7),
        ("1h30m", 5400 * 10**9),
        ("1h30m15.5s", (5415 * 10**9) + 500_000_000),
        ("2m3s4ms", 123_004_000_000),
        ("-1s", -(10**9)),
        ("+1m", 60 * 10**9),
        ("0s", 0),
        ("0.1s", 100_000_000),
        ("2562047h47m16.854775807s", 2**63 - 1),
    ],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns
    assert parse_duration(text) == pytest.approx(ns / 1e9)


@pytest.mark.parametrize(
    "text",
    ["", "1", "10", "1d", "s", ".s", "1.2.3s", "abc", "1h 30m", "--1s", "3000000h"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ns(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1500, "1.5\u00b5s"),
        (250_000_000, "250ms"),
        (10**9, "1s"),
        (1_500_000_000, "1.5s"),
        (-(10**9), "-1s"),
        (60 * 10**9, "1m0s"),
        (3600 * 10**9, "1h0m0s"),
        (5415 * 10**9 + 500_000_000, "1h30m15.5s"),
        (24 * 3600 * 10**9, "24h0m0s"),
    ],
)
def test_format_duration(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text
    assert format_duration(ns / 1e9) == text
