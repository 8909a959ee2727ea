"""The embedded NATS supervisor's pure pieces, without a process: reading
the child's log and ports file, naming start-up failures, pinning ports,
counting exits against the restart policy."""

from __future__ import annotations

from nss.natsd import EmbeddedNATS, RestartPolicy
from nss.natsd.logs import listening, public_text, start_failure
from nss.natsd.ports import Listening, ports_file_listeners
from nss.natsd.restart import ExitWindow
from nss.options import NATSOptions


def test_listener_lines() -> None:
    assert listening("Listening for client connections on 0.0.0.0:4222") == Listening(
        "client", 4222, "0.0.0.0"
    )
    assert listening("Listening for client connections on [::1]:5222") == Listening(
        "client", 5222, "::1"
    )
    assert listening("Starting https monitor on 127.0.0.1:8222") == Listening(
        "monitor", 8222, "127.0.0.1", "https"
    )
    assert listening("Listening for route connections on 0.0.0.0:6222") == Listening(
        "route", 6222, "0.0.0.0"
    )
    # an address that does not parse still announces the listener
    assert listening("Listening for route connections on nowhere") == Listening("route", None)
    assert listening("Server is ready") is None


def test_ports_file_only_fills_gaps() -> None:
    found = ports_file_listeners(
        {
            "nats": ["nats://127.0.0.1:4333"],
            "monitoring": ["https://127.0.0.1:8333"],
            "cluster": ["nats://127.0.0.1:6333"],
        }
    )
    assert found == [
        Listening("client", 4333, only_if_unknown=True),
        Listening("monitor", 8333, scheme="https", only_if_unknown=True),
        Listening("route", 6333, only_if_unknown=True),
    ]
    e = EmbeddedNATS(NATSOptions(port=-1))
    e._learn(Listening("client", 4222, "0.0.0.0"))
    for f in found:
        e._learn(f)
    # the log's word stands; the ports file told what the log did not
    assert e.client_url == "nats://127.0.0.1:4222"
    assert e.monitor_url == "https://127.0.0.1:8333"  # no host: -a, dialled via loopback
    assert e.cluster_port == 6333
    e._learn(Listening("client", None))  # an address that did not parse
    assert e.port == 4222


def test_start_failure_names_the_listener() -> None:
    err = start_failure(
        1,
        "Error listening on monitor port: listen tcp 0.0.0.0:8222: "
        "bind: address already in use",
        (),
        "",
    )
    assert err.port_in_use and err.returncode == 1
    assert str(err) == (
        "embedded NATS server exited with status 1 before it was ready: monitoring "
        "address 0.0.0.0:8222 already in use (Error listening on monitor port: "
        "listen tcp 0.0.0.0:8222: bind: address already in use)"
    )
    lines = ("[1] [INF] Starting nats-server", "[1] [WRN] something", "nats-server: boom")
    err = start_failure(2, None, lines, "")
    # the last three lines, untagged output (flag errors, panics) kept whole
    assert str(err).endswith(
        "before it was ready: Starting nats-server | something | nats-server: boom"
    )
    assert err.last_lines == lines and not err.port_in_use
    err = start_failure(3, None, (), "/etc/nats.conf")
    assert str(err).endswith("no output (check the log settings in /etc/nats.conf)")


def test_public_text_hides_the_private_file() -> None:
    def shown(text: str, user_config: str = "") -> str | None:
        return public_text(
            "INF", text, private_config="/p/nats.conf", user_config=user_config,
            monitor_address="",
        )  # fmt: skip

    assert shown("Using configuration file: /p/nats.conf (sha256:ab)") is None
    assert shown("Using configuration file: /p/nats.conf", "/etc/n.conf") == (
        "Using configuration file: /etc/n.conf"
    )
    # other levels are relayed as they are
    assert public_text(
        "ERR", "x (sha256:ab)", private_config="/p", user_config="", monitor_address=""
    ) == "x (sha256:ab)"


def test_exits_outside_the_window_do_not_count() -> None:
    window = ExitWindow(60.0)
    assert [window.record(t) for t in (0.0, 10.0, 20.0)] == [1, 2, 3]
    assert window.record(75.0) == 2  # 0 and 10 are older than 60 s
    policy = RestartPolicy()
    assert [policy.delay(n) for n in (1, 2, 3, 6)] == [0.1, 0.2, 0.4, 2.0]


def test_child_gets_one_go_processor_unless_told_otherwise(tmp_path) -> None:
    from nss.natsd.args import child_env

    plain = NATSOptions()
    assert child_env(plain, {"PATH": "/bin"})["GOMAXPROCS"] == "1"
    assert child_env(plain, {"GOMAXPROCS": "4"})["GOMAXPROCS"] == "4"
    assert "GOMAXPROCS" not in child_env(NATSOptions(jetstream=True), {})
    conf = tmp_path / "nats.conf"
    conf.write_text("port: 4222\nJetStream { store_dir: /tmp/js }\n")
    assert "GOMAXPROCS" not in child_env(plain, {}, str(conf))
    conf.write_text("port: 4222\n")
    assert child_env(plain, {}, str(conf))["GOMAXPROCS"] == "1"
    assert child_env(plain, {}, str(tmp_path / "missing.conf"))["GOMAXPROCS"] == "1"
