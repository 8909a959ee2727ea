"""Subjects and channel names: the rules for a valid name, and the subject
trie that matches a name against wildcard patterns.

Pure and apart from both of its users: store limits resolve per-channel
entries through the trie (``nss.stores.limits``) and partitioning decides
which channels a server owns with it (``nss.server.partitions``); the name
rules are the Go server's ``util.IsChannelNameValid`` and
``IsChannelNameLiteral``, used for publish and subscribe subjects and for
configured per-channel names alike.

The trie reproduces Go's ``util/sublist.go`` node for node instead of
computing a "most specific pattern", because the order in which its
``Subjects()`` lists entries and ``Match()`` returns them decides limit
inheritance, including its surprising cases (stores.md §2); sibling literal
tokens are visited in insertion order where Go uses (random) map order.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = [
    "Sublist",
    "is_channel_name_literal",
    "is_channel_name_valid",
    "valid_channel",
]

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Channel names (util.IsChannelNameValid / IsChannelNameLiteral)


def is_channel_name_valid(name: str, wildcards_allowed: bool = True) -> bool:
    """Go's ``util.IsChannelNameValid`` (protocol.md §10.1).

    Invalid: empty, containing ``/`` (the FILE store makes a directory of
    every channel), a ``.`` first or last or doubled; and either any
    wildcard (when not allowed) or a ``*``/``>`` that is not a whole token,
    or a ``>`` that is not the last token. Written with ``in`` tests rather
    than Go's loop over characters: it runs for every publish.
    """
    if not name or name[0] == "." or name[-1] == "." or "/" in name or ".." in name:
        return False
    if "*" not in name and ">" not in name:
        return True
    if not wildcards_allowed:
        return False
    tokens = name.split(".")
    last = len(tokens) - 1
    for i, t in enumerate(tokens):
        if ("*" in t or ">" in t) and len(t) > 1:
            return False
        if t == ">" and i != last:
            return False
    return True


def valid_channel(name: str) -> bool:
    """A name a client may publish or subscribe to: valid, no wildcard."""
    return is_channel_name_valid(name, False)


def is_channel_name_literal(name: str) -> bool:
    """True when ``name`` (assumed valid) holds no wildcard."""
    return "*" not in name and ">" not in name


# ---------------------------------------------------------------------------
# Subject trie


class _Node(Generic[T]):
    __slots__ = ("elements", "next")

    def __init__(self) -> None:
        self.next: _Level[T] = _Level()
        self.elements: list[T] = []


class _Level(Generic[T]):
    __slots__ = ("fwc", "nodes", "pwc")

    def __init__(self) -> None:
        self.nodes: dict[str, _Node[T]] = {}
        self.pwc: _Node[T] | None = None
        self.fwc: _Node[T] | None = None

    def num_nodes(self) -> int:
        return len(self.nodes) + (self.pwc is not None) + (self.fwc is not None)


class Sublist(Generic[T]):
    """The streaming server's ``util.Sublist`` (insert, Match, Subjects).

    Only what limit resolution and partitioning need; results follow the Go
    code's order exactly, which is what makes limit inheritance match the Go
    server.
    """

    def __init__(self) -> None:
        self._root: _Level[T] = _Level()

    def insert(self, subject: str, element: T) -> None:
        """Add ``element`` under ``subject`` (a literal or a pattern)."""
        level = self._root
        node: _Node[T] | None = None
        seen_fwc = False
        for tok in subject.split("."):
            if not tok or seen_fwc:
                raise ValueError("sublist: invalid subject")
            if tok[0] == "*":
                node = level.pwc
                if node is None:
                    node = level.pwc = _Node()
            elif tok[0] == ">":
                seen_fwc = True
                node = level.fwc
                if node is None:
                    node = level.fwc = _Node()
            else:
                node = level.nodes.get(tok)
                if node is None:
                    node = level.nodes[tok] = _Node()
            level = node.next
        assert node is not None
        node.elements.append(element)

    def match(self, subject: str) -> list[T]:
        """Go's ``Match``: ``subject`` is read as literal tokens (a ``*`` or
        ``>`` in it only meets the same-named literal node, and is itself
        matched by wildcards).  At each level: the ``>`` entries, then
        recursively everything reached through ``*``, then descend into the
        literal token; after the last token the last level's ``*`` entries
        and then the literal node's entries."""
        results: list[T] = []
        _match_level(self._root, subject.split("."), results)
        return results

    def subjects(self) -> list[str]:
        """Go's ``Subjects``: level by level, ``>`` then ``*`` (and below it)
        then each literal token (and below it), i.e. widest first."""
        out: list[str] = []
        _get_subjects(self._root, "", out)
        return out

    def num_levels(self) -> int:
        """Go's ``NumLevels``: the depth of the trie (tokens of the longest
        subject), which sets the indentation of the banner's channel tree."""
        return _depth(self._root, 0)


def _depth(level: _Level[T] | None, depth: int) -> int:
    if level is None or level.num_nodes() == 0:
        return depth
    depth += 1
    nodes = [*level.nodes.values(), level.pwc, level.fwc]
    return max(_depth(n.next, depth) for n in nodes if n is not None)


def _match_level(level: _Level[T] | None, toks: list[str], results: list[T]) -> None:
    pwc: _Node[T] | None = None
    node: _Node[T] | None = None
    for i, tok in enumerate(toks):
        if level is None:
            return
        if level.fwc is not None:
            results.extend(level.fwc.elements)
        pwc = level.pwc
        if pwc is not None:
            _match_level(pwc.next, toks[i + 1 :], results)
        node = level.nodes.get(tok)
        level = node.next if node is not None else None
    if pwc is not None:
        results.extend(pwc.elements)
    if node is not None:
        results.extend(node.elements)


def _get_subjects(level: _Level[T], prefix: str, out: list[str]) -> None:
    if level.num_nodes() == 0:
        return

    def join(tok: str) -> str:
        return f"{prefix}.{tok}" if prefix else tok

    if level.fwc is not None:
        out.append(join(">"))
    if level.pwc is not None:
        subject = join("*")
        if level.pwc.elements:
            out.append(subject)
        _get_subjects(level.pwc.next, subject, out)
    for tok, node in level.nodes.items():
        subject = join(tok)
        if node.elements:
            out.append(subject)
        _get_subjects(node.next, subject, out)
