"""The SQL store's schema scripts, shipped inside the package.

A pip user has no source tree, so the scripts live here as package data and
``nss --sql_schema <name>`` prints one (``nss --sql_schema postgres | psql
-d nss``). The SQL store itself never runs them: like the Go server it only
checks the schema (``nss.stores.sql.schema``) and names what is missing.

Standard library only: ``--sql_schema`` must work without loading the store.
"""

from __future__ import annotations

from importlib import resources

# name given to --sql_schema -> file in this package
SCRIPTS: dict[str, str] = {
    "postgres": "postgres.db.sql",
    "mysql": "mysql.db.sql",
    "drop_postgres": "drop_postgres.db.sql",
}
# --sql_driver spellings accepted for the same scripts
_ALIASES = {"postgresql": "postgres"}


def script_key(name: str) -> str | None:
    """The ``SCRIPTS`` key for ``name`` (case-insensitive, driver aliases
    allowed), or None when there is no such script."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in SCRIPTS else None


def schema_command(driver: str) -> str:
    """The shell command that creates the schema, for error messages."""
    name = script_key(driver) or driver
    client = "mysql <database>" if name == "mysql" else "psql -d <database>"
    return f"nss --sql_schema {name} | {client}"


def script(name: str) -> str:
    """The text of a schema script; ``ValueError`` lists the known names."""
    key = script_key(name)
    if key is None:
        raise ValueError(f"unknown schema script {name!r}; choose one of: {', '.join(SCRIPTS)}")
    return resources.files(__name__).joinpath(SCRIPTS[key]).read_text(encoding="utf-8")
