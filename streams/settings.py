"""Runtime settings, read once from `POSTEE_*` environment variables.

Grouped by concern into frozen dataclasses; every field has a default and its unit in its
name. `Settings.from_env()` fails fast with a `ConfigError` naming the variable, before
anything connects to Kafka. The Postee routing config (cfg.yaml) is separate: `config.py`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from streams.errors import ConfigError

__all__ = [
    "RUNNER_NAME",
    "ActionLimits",
    "EngineSettings",
    "IngestSettings",
    "KafkaSettings",
    "Settings",
    "TopicSettings",
    "TraceSettings",
    "UiSettings",
    "check_runner_name",
    "runner_app_id",
]

DAY_S = 24 * 3600
#: Room above the largest event for what a record adds around it: key, headers, framing,
#: and a command's own fields when it carries the event by reference.
RECORD_ENVELOPE_BYTES = 64 * 1024


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = "localhost:9092"
    """Bootstrap servers, comma separated (`POSTEE_KAFKA`)."""
    store: str = "memory://"
    """Faust table store (`POSTEE_STORE`); tables are rebuilt from their changelog topics."""
    commit_interval_s: float = 0.5
    """How often consumed offsets are committed (`POSTEE_COMMIT_INTERVAL_S`). Shorter than
    Faust's 2.8 s default: after a crash, fewer finished records come back (their
    commands are then skipped by the ledger, or rerun if their ledger entry was lost)."""
    data_dir: Path = Path(tempfile.gettempdir()) / "postee-streams"
    """Where Faust keeps local state, one folder per app id (`POSTEE_DATA_DIR`)."""
    linger_ms: int = 0
    """How long the producer holds a batch open for more records (`POSTEE_LINGER_MS`,
    0 to 1000). With 0 a batch still forms while the previous produce request is in
    flight (aiokafka keeps one per broker), so under load records go out together anyway;
    a linger only adds its wait to every hop of the path (event, command, outcome).
    Measured in one session, interleaved, `bench/post_to_delivery.py --events 3000` with 0
    against 2: as fast as possible 523 and 483 events/s against 362 and 377, p50 at 100
    events/s 7.5 and 6.4 ms against 20.9 and 14.1, exec 328 and 338 commands/s against
    174 and 277; the router alone (`bench/route_throughput.py --unique`, 10 routes) was
    within noise (1,188 and 1,450 events/s against 1,349 and 1,254)."""
    fetch_max_wait_ms: int = 100
    """How long the broker may hold a fetch for partitions without new records
    (`POSTEE_FETCH_MAX_WAIT_MS`, 1 to 1500; Faust's fixed value is 1500). A partition
    drained meanwhile waits for that fetch to return, so this bounds a stall at each hop
    (streams/consumer.py has the measurement); the cost is an idle fetch this often."""
    session_timeout_s: float | None = None
    """Kafka consumer session timeout (`POSTEE_SESSION_TIMEOUT_S`; default 60 s for a
    worker, 10 s for a runner): after a kill -9, the restarted process gets the dead
    one's partitions back once its session expired."""


@dataclass(frozen=True)
class TopicSettings:
    prefix: str = "postee"
    """Prefix of every topic and of the Faust app id (`POSTEE_TOPIC_PREFIX`)."""
    partitions: int = 4
    """Partitions of the events, replay, actions and outcomes topics (`POSTEE_PARTITIONS`)."""
    replication: int = 1
    """Replication factor of the topics the app creates (`POSTEE_REPLICATION`)."""
    events_retention_s: int = 365 * DAY_S
    """Retention of events and outcomes: the forensic record (`POSTEE_EVENTS_RETENTION_S`)."""
    actions_retention_s: int = 7 * DAY_S
    """Retention of command and DLQ topics (`POSTEE_ACTIONS_RETENTION_S`)."""

    def name(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"


@dataclass(frozen=True)
class IngestSettings:
    enabled: bool = True
    """Run the HTTP ingest bridge in this worker (`POSTEE_INGEST`, 0 to disable)."""
    host: str = "0.0.0.0"  # noqa: S104 - a webhook receiver listens on all interfaces, as upstream
    port: int = 8082
    """From `POSTEE_HTTP` (`host:port`, upstream's default `0.0.0.0:8082`)."""
    max_body_bytes: int = 1024 * 1024
    """Largest accepted event (`POSTEE_MAX_BODY_BYTES`); a larger body gets 413. The one
    size setting: the producer's request limit and our topics' `max.message.bytes` are
    derived from it (`max_record_bytes`), and the worker checks them at start."""
    produce_timeout_s: float = 15.0
    """How long a request waits for the broker's ack before answering 503
    (`POSTEE_PRODUCE_TIMEOUT_S`)."""
    body_timeout_s: float = 30.0
    """How long a client may take to send its body (`POSTEE_BODY_TIMEOUT_S`); then 408."""
    token: str | None = field(default=None, repr=False)
    """When set, POSTs need `Authorization: Bearer <token>` (`POSTEE_TOKEN`)."""
    hmac_secret: str | None = field(default=None, repr=False)
    """When set, POSTs need `X-Postee-Signature: sha256=<HMAC-SHA256 of the body>`
    (`POSTEE_HMAC_SECRET`)."""
    https: tuple[str, int] | None = None
    """HTTPS listener `host:port` (`POSTEE_HTTPS`), with `POSTEE_TLS_CERT` and `POSTEE_TLS_KEY`."""
    probes: tuple[str, int] | None = None
    """Where a process without the bridge (a runner, `--no-ingest`) answers `/livez`,
    `/readyz`, `/metrics` and `POST /reload` (`POSTEE_PROBES_HTTP`, `host:port`); unset:
    no listener."""
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def max_record_bytes(self) -> int:
        """The largest record we produce: an event of the largest size with its headers,
        or a command that carries such an event's rendered description."""
        return self.max_body_bytes + RECORD_ENVELOPE_BYTES


@dataclass(frozen=True)
class ActionLimits:
    exec_timeout_s: float = 60.0
    """Default run time bound of an exec action (`POSTEE_EXEC_TIMEOUT_S`)."""
    max_output_bytes: int = 16 * 1024
    """Bytes of stdout and of stderr kept in an outcome record (`POSTEE_MAX_OUTPUT_BYTES`)."""
    shutdown_grace_s: float = 20.0
    """On SIGTERM, how long in-flight actions may still run before they are killed and
    recorded as failed (`POSTEE_SHUTDOWN_GRACE_S`)."""
    done_retention_s: int = 7 * DAY_S
    """How long finished command ids are remembered to skip redeliveries
    (`POSTEE_DONE_RETENTION_S`)."""
    max_waiting_per_action: int = 256
    """Commands of one action that may wait in memory for one of its slots
    (`POSTEE_MAX_WAITING_PER_ACTION`); beyond that, new ones are parked on the retry topic
    (streams/lanes.py), so a slow target never holds up the agent reading its topic."""
    max_scheduled_retries: int = 10_000
    """Retry records held in memory until they are due (`POSTEE_MAX_SCHEDULED_RETRIES`);
    beyond that the retry topic is read no further until some ran (streams/retries.py)."""
    park_delay_s: float = 1.0
    """How long a command parked because its action's lane was full waits before it is
    offered again (`POSTEE_PARK_DELAY_S`); doubled each time it is parked again, up to 30 s."""


def _cores() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class EngineSettings:
    eval_workers: int = field(default_factory=_cores)
    """Evaluator processes running the Rego engine (`POSTEE_EVAL_WORKERS`, default: cores)."""
    eval_timeout_ms: int = 2000
    """Longest evaluation of one event; the evaluator is then killed and replaced
    (`POSTEE_EVAL_TIMEOUT_MS`)."""
    max_input_values: int = 20_000
    """Most JSON values in an event given to the engine (`POSTEE_MAX_INPUT_VALUES`)."""
    max_string_bytes: int = 32 * 1024
    """Longest string (UTF-8 bytes) in an event given to the engine
    (`POSTEE_MAX_STRING_BYTES`)."""


@dataclass(frozen=True)
class UiSettings:
    host: str = "127.0.0.1"
    port: int = 8083
    """From `POSTEE_UI_HTTP` (`host:port`): where `postee ui` listens."""
    token: str | None = field(default=None, repr=False)
    """When set, every page and API call needs `Authorization: Bearer <token>` or the
    session cookie that the login form sets from the same secret (`POSTEE_UI_TOKEN`).
    Required on any address that is not loopback."""
    tls_cert: Path | None = None
    """With `tls_key`, serve HTTPS instead of HTTP (`POSTEE_UI_TLS_CERT`)."""
    tls_key: Path | None = None
    """The certificate's private key (`POSTEE_UI_TLS_KEY`)."""
    window_s: int = DAY_S
    """How far back the in-memory index of the lists reaches (`POSTEE_UI_WINDOW_S`)."""
    max_events: int = 20_000
    """At most this many events in the index; the oldest go first (`POSTEE_UI_MAX_EVENTS`)."""

    @property
    def loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")


#: What `OTEL_TRACES_EXPORTER` may name (comma separated): the exporters shipped here.
TRACE_EXPORTERS = ("otlp", "console", "none")


@dataclass(frozen=True)
class TraceSettings:
    enabled: bool = False
    """Traces with OpenTelemetry (`POSTEE_OTEL`; off by default). Without `POSTEE_OTEL`,
    on when `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    `OTEL_TRACES_EXPORTER` (other than `none`) is set, unless `OTEL_SDK_DISABLED=true`."""
    exporters: tuple[str, ...] = ("otlp",)
    """From `OTEL_TRACES_EXPORTER`: `otlp` (OTLP over HTTP/protobuf, to
    `OTEL_EXPORTER_OTLP_ENDPOINT`, default `http://localhost:4318`), `console`, `none`."""
    service_name_set: bool = False
    """`OTEL_SERVICE_NAME` names the service instead of `postee-streams`."""


@dataclass(frozen=True)
class Settings:
    config_path: Path = Path("cfg.yaml")
    """The Postee config (`POSTEE_CFG`)."""
    rego_filters_path: Path = Path("rego-filters")
    """Where route `input-files` are looked up (`REGO_FILTERS_PATH`)."""
    templates_path: Path = Path("rego-templates")
    """Where template `rego-package`s are looked up (`POSTEE_TEMPLATES_PATH`)."""
    debug: bool = False
    """Verbose logging (`POSTEE_DEBUG`)."""
    log_format: str = "text"
    """`text` (Faust's lines) or `json` (one object per line) (`POSTEE_LOG_FORMAT`)."""
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    actions: ActionLimits = field(default_factory=ActionLimits)
    engine: EngineSettings = field(default_factory=EngineSettings)
    reload_watch_s: float = 0.0
    """Poll the config and Rego files this often and reload on a change; 0: no watch
    (`POSTEE_RELOAD_WATCH_S`). SIGHUP and `POST /reload` always reload."""
    runner_name: str | None = None
    """Set by `postee runner --name` (or `POSTEE_RUNNER_NAME`): this process is that runner."""
    ui: UiSettings = field(default_factory=UiSettings)
    traces: TraceSettings = field(default_factory=TraceSettings)

    @property
    def loglevel(self) -> str:
        return "debug" if self.debug else "info"

    @property
    def app_id(self) -> str:
        """Consumer group and changelog prefix: follows the topic prefix, so two prefixes
        on one broker share nothing and workers with one prefix form one group. A runner
        has a group (and ledger) of its own: `<prefix>-runner-<name>`."""
        if self.runner_name:
            return runner_app_id(self.topics.prefix, self.runner_name)
        return f"{self.topics.prefix}-streams"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        host, port = env.host_port("POSTEE_HTTP", IngestSettings.host, IngestSettings.port)
        return cls(
            config_path=env.path("POSTEE_CFG", cls.config_path),
            rego_filters_path=env.path("REGO_FILTERS_PATH", cls.rego_filters_path),
            templates_path=env.path("POSTEE_TEMPLATES_PATH", cls.templates_path),
            debug=env.flag("POSTEE_DEBUG", False),
            log_format=env.choice("POSTEE_LOG_FORMAT", ("text", "json"), "text"),
            reload_watch_s=env.positive_float("POSTEE_RELOAD_WATCH_S", 0.0),
            kafka=KafkaSettings(
                bootstrap=env.text("POSTEE_KAFKA", KafkaSettings.bootstrap),
                store=env.text("POSTEE_STORE", KafkaSettings.store),
                data_dir=env.path("POSTEE_DATA_DIR", KafkaSettings.data_dir),
                commit_interval_s=env.positive_float(
                    "POSTEE_COMMIT_INTERVAL_S", KafkaSettings.commit_interval_s
                ),
                linger_ms=env.bounded_int("POSTEE_LINGER_MS", KafkaSettings.linger_ms, 0, 1000),
                fetch_max_wait_ms=env.bounded_int(
                    "POSTEE_FETCH_MAX_WAIT_MS", KafkaSettings.fetch_max_wait_ms, 1, 1500
                ),
                session_timeout_s=(
                    env.positive_float("POSTEE_SESSION_TIMEOUT_S", 60.0)
                    if env.text("POSTEE_SESSION_TIMEOUT_S", "")
                    else None
                ),
            ),
            topics=TopicSettings(
                prefix=env.prefix("POSTEE_TOPIC_PREFIX", TopicSettings.prefix),
                partitions=env.positive_int("POSTEE_PARTITIONS", TopicSettings.partitions),
                replication=env.positive_int("POSTEE_REPLICATION", TopicSettings.replication),
                events_retention_s=env.positive_int(
                    "POSTEE_EVENTS_RETENTION_S", TopicSettings.events_retention_s
                ),
                actions_retention_s=env.positive_int(
                    "POSTEE_ACTIONS_RETENTION_S", TopicSettings.actions_retention_s
                ),
            ),
            ingest=_ingest(env, host, port),
            actions=ActionLimits(
                exec_timeout_s=env.positive_float(
                    "POSTEE_EXEC_TIMEOUT_S", ActionLimits.exec_timeout_s
                ),
                max_output_bytes=env.positive_int(
                    "POSTEE_MAX_OUTPUT_BYTES", ActionLimits.max_output_bytes
                ),
                shutdown_grace_s=env.positive_float(
                    "POSTEE_SHUTDOWN_GRACE_S", ActionLimits.shutdown_grace_s
                ),
                done_retention_s=env.positive_int(
                    "POSTEE_DONE_RETENTION_S", ActionLimits.done_retention_s
                ),
                max_waiting_per_action=env.positive_int(
                    "POSTEE_MAX_WAITING_PER_ACTION", ActionLimits.max_waiting_per_action
                ),
                max_scheduled_retries=env.positive_int(
                    "POSTEE_MAX_SCHEDULED_RETRIES", ActionLimits.max_scheduled_retries
                ),
                park_delay_s=env.positive_float("POSTEE_PARK_DELAY_S", ActionLimits.park_delay_s),
            ),
            engine=EngineSettings(
                eval_workers=env.positive_int("POSTEE_EVAL_WORKERS", _cores()),
                eval_timeout_ms=env.positive_int(
                    "POSTEE_EVAL_TIMEOUT_MS", EngineSettings.eval_timeout_ms
                ),
                max_input_values=env.positive_int(
                    "POSTEE_MAX_INPUT_VALUES", EngineSettings.max_input_values
                ),
                max_string_bytes=env.positive_int(
                    "POSTEE_MAX_STRING_BYTES", EngineSettings.max_string_bytes
                ),
            ),
            ui=_ui(env),
            traces=_traces(env),
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


#: What `runs-on` and `postee runner --name` accept (also in schemas/config.schema.json):
#: it becomes part of topic names, which Kafka limits to these characters and 249 of them.
RUNNER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def runner_app_id(prefix: str, runner: str) -> str:
    """The Faust app id, consumer group and changelog prefix of runner `runner`."""
    return f"{prefix}-runner-{runner}"


def check_runner_name(name: str) -> str:
    if not RUNNER_NAME.fullmatch(name):
        raise ConfigError(
            f"a runner name takes letters, digits, '.', '_', '-' (at most 100): {name!r}",
            key="POSTEE_RUNNER_NAME",
        )
    return name


def _ingest(env: _Env, host: str, port: int) -> IngestSettings:
    https = None
    if env.text("POSTEE_HTTPS", ""):
        https = env.host_port("POSTEE_HTTPS", IngestSettings.host, 8445)
        for name in ("POSTEE_TLS_CERT", "POSTEE_TLS_KEY"):
            if not env.text(name, ""):
                raise ConfigError("POSTEE_HTTPS needs a certificate and its key", key=name)
    return IngestSettings(
        enabled=env.flag("POSTEE_INGEST", True),
        host=host,
        port=port,
        max_body_bytes=env.positive_int("POSTEE_MAX_BODY_BYTES", IngestSettings.max_body_bytes),
        body_timeout_s=env.positive_float("POSTEE_BODY_TIMEOUT_S", IngestSettings.body_timeout_s),
        produce_timeout_s=env.positive_float(
            "POSTEE_PRODUCE_TIMEOUT_S", IngestSettings.produce_timeout_s
        ),
        token=env.text("POSTEE_TOKEN", "") or None,
        hmac_secret=env.text("POSTEE_HMAC_SECRET", "") or None,
        https=https,
        probes=env.host_port("POSTEE_PROBES_HTTP", "0.0.0.0", 8084)  # noqa: S104 - probes
        if env.text("POSTEE_PROBES_HTTP", "")
        else None,
        tls_cert=env.path("POSTEE_TLS_CERT", Path()) if https else None,
        tls_key=env.path("POSTEE_TLS_KEY", Path()) if https else None,
    )


def _ui(env: _Env) -> UiSettings:
    host, port = env.host_port("POSTEE_UI_HTTP", UiSettings.host, UiSettings.port)
    cert, key = env.text("POSTEE_UI_TLS_CERT", ""), env.text("POSTEE_UI_TLS_KEY", "")
    if bool(cert) != bool(key):
        raise ConfigError(
            "HTTPS needs both a certificate and its key",
            key="POSTEE_UI_TLS_KEY" if cert else "POSTEE_UI_TLS_CERT",
        )
    return UiSettings(
        host=host,
        port=port,
        token=env.text("POSTEE_UI_TOKEN", "") or None,
        tls_cert=Path(cert) if cert else None,
        tls_key=Path(key) if key else None,
        window_s=env.positive_int("POSTEE_UI_WINDOW_S", UiSettings.window_s),
        max_events=env.positive_int("POSTEE_UI_MAX_EVENTS", UiSettings.max_events),
    )


def _traces(env: _Env) -> TraceSettings:
    names = env.text("OTEL_TRACES_EXPORTER", "")
    exporters = tuple(n.strip().lower() for n in names.split(",") if n.strip()) or ("otlp",)
    unknown = [n for n in exporters if n not in TRACE_EXPORTERS]
    if unknown:
        raise ConfigError(
            f"unknown exporter {unknown[0]!r}: expected {', '.join(TRACE_EXPORTERS)}",
            key="OTEL_TRACES_EXPORTER",
        )
    if env.text("POSTEE_OTEL", ""):
        enabled = env.flag("POSTEE_OTEL", False)
    elif env.flag("OTEL_SDK_DISABLED", False):
        enabled = False
    else:
        endpoint = env.text("OTEL_EXPORTER_OTLP_ENDPOINT", "") or env.text(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""
        )
        enabled = (bool(endpoint) or bool(names)) and exporters != ("none",)
    key = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    if not env.text(key, ""):
        key = "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = env.text(key, "http/protobuf")
    if enabled and "otlp" in exporters and protocol != "http/protobuf":
        raise ConfigError(f"only OTLP over http/protobuf is shipped, got {protocol!r}", key=key)
    service_name_set = bool(env.text("OTEL_SERVICE_NAME", ""))
    return TraceSettings(enabled=enabled, exporters=exporters, service_name_set=service_name_set)


class _Env:
    """Typed reads of environment variables; a bad value names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str) -> str:
        value = self._environ.get(name, "").strip()
        return value or default

    def path(self, name: str, default: Path) -> Path:
        value = self._environ.get(name, "").strip()
        return Path(value) if value else default

    def flag(self, name: str, default: bool) -> bool:
        value = self._environ.get(name, "").strip().lower()
        if not value:
            return default
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"expected a boolean (1/0, true/false), got {value!r}", key=name)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self._environ.get(name, "").strip().lower() or default
        if value not in choices:
            raise ConfigError(f"expected one of {', '.join(choices)}, got {value!r}", key=name)
        return value

    def positive_int(self, name: str, default: int) -> int:
        return self.bounded_int(name, default, 1, None, "must be positive")

    def bounded_int(
        self, name: str, default: int, low: int, high: int | None, why: str | None = None
    ) -> int:
        value = self._environ.get(name, "").strip()
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"expected an integer, got {value!r}", key=name) from None
        if number < low or (high is not None and number > high):
            why = why or f"must be from {low} to {high}"
            raise ConfigError(f"{why}, got {number}", key=name)
        return number

    def positive_float(self, name: str, default: float) -> float:
        value = self._environ.get(name, "").strip()
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"expected a number, got {value!r}", key=name) from None
        if not number > 0:
            raise ConfigError(f"must be positive, got {value}", key=name)
        return number

    def prefix(self, name: str, default: str) -> str:
        value = self.text(name, default)
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not set(value) <= allowed or len(value) > 100:
            raise ConfigError(
                f"a topic prefix takes letters, digits, '.', '_', '-': {value!r}", key=name
            )
        return value

    def host_port(self, name: str, default_host: str, default_port: int) -> tuple[str, int]:
        value = self._environ.get(name, "").strip()
        if not value:
            return default_host, default_port
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"expected host:port, got {value!r}", key=name)
        return host or default_host, int(port)
