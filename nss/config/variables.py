"""``$VAR`` references: the maps a reference can see and its lookup.

A reference is resolved while parsing, from the keys already defined in
the enclosing maps (innermost first); the environment is the fallback,
handled by the parser because an environment value is itself parsed as a
config value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nss.config.values import Value

# "$2a$..." is a bcrypt hash (a password), not a variable reference.
_BCRYPT_PREFIX = "2a$"


def is_literal_dollar(name: str) -> bool:
    """Whether ``$name`` is kept as text rather than resolved."""
    return name.startswith(_BCRYPT_PREFIX)


class Scopes:
    """The maps under construction, outermost first."""

    def __init__(self) -> None:
        self._maps: list[dict[str, Value]] = []

    @contextmanager
    def inside(self, m: dict[str, Value]) -> Iterator[dict[str, Value]]:
        """Make ``m`` the innermost map while its entries are parsed."""
        self._maps.append(m)
        try:
            yield m
        finally:
            self._maps.pop()

    def set(self, key: str, value: Value) -> None:
        """Define ``key`` in the innermost map.

        Re-inserting moves a redefined key to its latest position, so that
        iterating the map applies definitions in file order.
        """
        ctx = self._maps[-1]
        ctx.pop(key, None)
        ctx[key] = value

    def lookup(self, name: str) -> Value | None:
        """The visible definition of ``name``, marked as used (a variable
        definition, not an option)."""
        for scope in reversed(self._maps):
            found = scope.get(name)
            if found is not None:
                found.used = True
                return found
        return None
