"""The README agrees with itself and with the shipped units: one set of
fail-over figures per store, and install steps that create what the systemd
units run (a venv, the nss user, /etc/nss)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
UNITS = sorted((ROOT / "systemd").glob("*.service"))


def _section(title: str) -> str:
    start = README.index(f"### {title}\n")
    end = README.find("\n#", start + 1)
    return README[start : end if end > 0 else len(README)]


def test_failover_figures_appear_once_per_store() -> None:
    """A figure such as "2.2 s median" anywhere but the one table would be
    a second, competing set of numbers."""
    table = _section("Fail-over times")
    outside = README.replace(table, "")
    assert not re.search(r"\d\s*m?s (median|worst)|median|worst", outside, re.I)
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and "---" not in ln]
    header, *stores = rows
    assert "median" in header and "worst" in header
    assert [r.split("|")[1].split()[0] for r in stores] == ["FILE", "SQL"]
    for row in stores:
        median, worst = (float(c.strip().removesuffix(" s")) for c in row.split("|")[3:5])
        assert 0 < median <= worst


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_install_steps_create_what_the_unit_runs(unit: Path) -> None:
    text = unit.read_text()
    exec_start = re.search(r"^ExecStart=(\S+) -sc (\S+)$", text, re.M)
    assert exec_start, "ExecStart runs nss with a configuration file"
    binary, conf = Path(exec_start.group(1)), Path(exec_start.group(2))
    user = re.search(r"^User=(\S+)$", text, re.M)
    assert user
    steps = _section("Installing nss on a new host")
    venv = binary.parent.parent
    assert binary.name == "nss"
    assert f"python3 -m venv {venv}\n" in steps
    assert f"{venv}/bin/pip install " in steps
    assert re.search(rf"useradd --system .*\b{user.group(1)}$", steps, re.M)
    assert re.search(rf"install -d .* {conf.parent}$", steps, re.M)
    assert f"{binary} -t -sc {conf}" in steps
    assert "/etc/systemd/system/nss.service" in steps
