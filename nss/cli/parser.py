"""Go ``flag`` package syntax, read into :class:`nss.options.Options`.

The rules (one or two dashes, booleans never take the next argument, other
flags always do, parsing stops at the first non-flag or ``--``) are listed
in :mod:`nss.cli`; the flags themselves in :mod:`nss.cli.flags`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nss.cli.errors import UsageError
from nss.cli.flags import (
    AT_DV,
    AT_DVV,
    AT_ENC_KEY,
    AT_HELP,
    AT_HELP_TLS,
    AT_PEERS,
    AT_SDV,
    AT_SQL_SCHEMA,
    AT_VERSION,
    AT_VV,
    BOOL,
    DUR,
    FLAGS,
    INT,
    SIZE,
    VALID_STORE_TYPES,
)
from nss.cli.values import parse_bool, parse_int
from nss.options import Options
from nss.units import go_quote, parse_duration, parse_size

__all__ = ["ParsedArgs", "parse_args"]


@dataclass
class ParsedArgs:
    """Result of ``parse_args``.

    ``explicit`` holds the dotted option paths (``"streaming.cluster_id"``,
    ``"nats.port"``, ``"streaming.store_limits.max_msgs"`` ...) of every
    option a flag explicitly set.  The Go server re-parses the flags after
    reading configuration files so that flags always win; recording the
    target paths lets the configuration loader skip those keys instead.
    Aliases collapse to the same path, and ``-SDV`` records both
    ``streaming.debug`` and ``streaming.trace``.
    """

    options: Options
    action: str = "run"  # "run", "help", "version", "help_tls" or "sql_schema"
    explicit: set[str] = field(default_factory=set)
    args: list[str] = field(default_factory=list)  # arguments left after the flags
    sql_schema: str = ""  # the script --sql_schema asked for


def parse_args(argv: Sequence[str]) -> ParsedArgs:
    """Parse ``argv`` (without the program name) into options.

    Raises ``UsageError`` for an undefined flag, a bad value or an
    unexpected positional argument.  Help/version requests are reported via
    ``ParsedArgs.action`` rather than printed, so callers (and tests) decide
    where output goes.
    """
    opts = Options()
    explicit: set[str] = set()
    specials: dict[str, Any] = {}
    sizes: list[tuple[str, str, str]] = []  # (name as given, raw value, target)

    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":  # ends the flags and is consumed
            i += 1
            break
        name = arg[2:] if arg[1] == "-" else arg[1:]
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {arg}")
        i += 1
        name, eq, attached = name.partition("=")
        value: str | None = attached if eq else None
        flag = FLAGS.get(name)
        if flag is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if flag.kind != BOOL and value is None:
            if i >= n:
                raise UsageError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        if flag.kind == SIZE:
            # Like Go, sizes are validated after all flags were read.
            assert value is not None
            sizes.append((name, value, flag.target))
            continue
        parsed = _typed(flag.kind, name, value)
        if flag.target.startswith("@"):
            specials[flag.target] = parsed
        else:
            _assign(opts, flag.target, parsed)
            explicit.add(flag.target)

    rest = list(argv[i:])
    _assign_sizes(opts, sizes, explicit)
    _apply_specials(opts, specials, explicit)
    return ParsedArgs(
        options=opts,
        action=_action(specials, rest),
        explicit=explicit,
        args=rest,
        sql_schema=specials.get(AT_SQL_SCHEMA, ""),
    )


def _typed(kind: str, name: str, value: str | None) -> Any:
    """The value of flag ``-name``; ``None`` is a boolean flag given alone."""
    if kind == BOOL:
        if value is None:
            return True
        try:
            return parse_bool(value)
        except ValueError as exc:
            raise UsageError(
                f"invalid boolean value {go_quote(value)} for -{name}: {exc}"
            ) from None
    assert value is not None
    try:
        if kind == INT:
            return parse_int(value)
        if kind == DUR:
            try:
                return parse_duration(value)
            except ValueError:
                raise ValueError("parse error") from None
        return value
    except ValueError as exc:
        raise UsageError(f"invalid value {go_quote(value)} for flag -{name}: {exc}") from None


def _assign(opts: Options, path: str, value: Any) -> None:
    obj: Any = opts
    *parents, last = path.split(".")
    for attr in parents:
        obj = getattr(obj, attr)
    setattr(obj, last, value)


def _assign_sizes(
    opts: Options, sizes: list[tuple[str, str, str]], explicit: set[str]
) -> None:
    for name, raw, target in sizes:
        try:
            size = parse_size(raw)
        except ValueError:
            raise UsageError(f"-{name} should be a size, got '{raw}'") from None
        _assign(opts, target, size)
        explicit.add(target)


def _action(specials: dict[str, Any], rest: list[str]) -> str:
    """What the command line asks for: a help or version flag wins over a
    command word (``nss version``), which wins over running."""
    if specials.get(AT_VERSION):
        return "version"
    if specials.get(AT_HELP):
        return "help"
    if specials.get(AT_HELP_TLS):
        return "help_tls"
    if AT_SQL_SCHEMA in specials:
        return "sql_schema"
    if rest:
        command = rest[0].lower()
        if command in ("version", "help"):
            return command
        raise UsageError(f"unrecognized command: {go_quote(rest[0])}")
    return "run"


def _apply_specials(
    opts: Options, specials: dict[str, Any], explicit: set[str]
) -> None:
    """Apply the flags whose effect is more than a single assignment."""
    st = opts.streaming
    nats = opts.nats
    if AT_SDV in specials:
        # -SDV decides both levels, whatever -SD/-SV said (Go applies it
        # after parsing), so -SDV=false turns both off.
        st.debug = st.trace = bool(specials[AT_SDV])
        explicit.update(("streaming.debug", "streaming.trace"))
    # The NATS combined flags only ever switch levels on.
    if specials.get(AT_DV):
        nats.debug = nats.trace = True
        explicit.update(("nats.debug", "nats.trace"))
    if specials.get(AT_VV):
        nats.trace = nats.trace_verbose = True
        explicit.update(("nats.trace", "nats.trace_verbose"))
    if specials.get(AT_DVV):
        nats.debug = nats.trace = nats.trace_verbose = True
        explicit.update(("nats.debug", "nats.trace", "nats.trace_verbose"))
    if AT_ENC_KEY in specials:
        st.encryption_key = specials[AT_ENC_KEY]
        explicit.add("streaming.encryption_key")
        if st.encryption_key:
            st.encrypt = True
            explicit.add("streaming.encrypt")
    if AT_PEERS in specials:
        raw = specials[AT_PEERS]
        if raw:
            node = st.cluster.node_id
            st.cluster.peers = [
                p for p in (part.strip() for part in raw.split(",")) if p and p != node
            ]
            explicit.add("streaming.cluster.peers")
    upper = st.store_type.upper()
    if upper in VALID_STORE_TYPES:
        # Normalised so the rest of the code can compare with "FILE" etc.;
        # an invalid value is kept verbatim for the error message.
        st.store_type = upper
