from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import Settings


def test_defaults_follow_upstream():
    settings = Settings.from_env({})
    assert (settings.ingest.host, settings.ingest.port) == ("0.0.0.0", 8082)
    assert settings.kafka.bootstrap == "localhost:9092" and settings.topics.prefix == "postee"
    assert settings.app_id == "postee-streams" and settings.ingest.max_body_bytes == 1024 * 1024


def test_environment_is_read():
    settings = Settings.from_env(
        {
            "POSTEE_HTTP": "127.0.0.1:9000",
            "POSTEE_TOPIC_PREFIX": "blue",
            "POSTEE_CFG": "/etc/cfg.yaml",
            "POSTEE_MAX_BODY_BYTES": "10",
        }
    )
    assert (settings.ingest.host, settings.ingest.port) == ("127.0.0.1", 9000)
    assert settings.topics.name("events") == "blue.events" and settings.app_id == "blue-streams"
    assert settings.config_path == Path("/etc/cfg.yaml") and settings.ingest.max_body_bytes == 10


def test_linger_defaults_to_zero_and_takes_a_bounded_integer():
    assert Settings.from_env({}).kafka.linger_ms == 0
    assert Settings.from_env({"POSTEE_LINGER_MS": "5"}).kafka.linger_ms == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POSTEE_HTTP", "nonsense"),
        ("POSTEE_PARTITIONS", "0"),
        ("POSTEE_PARTITIONS", "many"),
        ("POSTEE_TOPIC_PREFIX", "bad prefix!"),
        ("POSTEE_INGEST", "perhaps"),
        ("POSTEE_LINGER_MS", "-1"),
        ("POSTEE_LINGER_MS", "1001"),
        ("POSTEE_LINGER_MS", "0.5"),
        ("POSTEE_FETCH_MAX_WAIT_MS", "0"),
        ("POSTEE_FETCH_MAX_WAIT_MS", "1501"),
        ("POSTEE_COMMIT_INTERVAL_S", "0"),
        ("POSTEE_COMMIT_INTERVAL_S", "soon"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert caught.value.key == name


def test_https_needs_cert_and_key_and_secrets_stay_out_of_repr():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"POSTEE_HTTPS": "0.0.0.0:8445"})
    assert caught.value.key == "POSTEE_TLS_CERT"
    settings = Settings.from_env({"POSTEE_TOKEN": "s3cret", "POSTEE_HMAC_SECRET": "k3y"})
    assert settings.ingest.token == "s3cret" and "s3cret" not in repr(settings)
    assert "k3y" not in repr(settings)


def test_ui_settings():
    ui = Settings.from_env({}).ui
    assert (ui.host, ui.port, ui.token, ui.loopback) == ("127.0.0.1", 8083, None, True)
    ui = Settings.from_env(
        {"POSTEE_UI_HTTP": "0.0.0.0:9999", "POSTEE_UI_TOKEN": "sekr1t", "POSTEE_UI_MAX_EVENTS": "5"}
    ).ui
    assert (ui.host, ui.port, ui.token, ui.max_events, ui.loopback) == (
        "0.0.0.0",
        9999,
        "sekr1t",
        5,
        False,
    )
    assert "sekr1t" not in repr(ui)  # the secret never reaches a log line
    with pytest.raises(ConfigError, match="POSTEE_UI_TLS_KEY"):
        Settings.from_env({"POSTEE_UI_TLS_CERT": "/c.pem"})
