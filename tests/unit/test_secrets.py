from __future__ import annotations

import pytest

from streams import secrets

ENV = {"TOKEN": "t0p-s3cret", "USER_NAME": "robot", "PW": "hunter22"}


def test_references_are_resolved_only_where_upstream_reads_them():
    params = {
        "user": "$USER_NAME",
        "password": "${PW}",
        "env": ["API_KEY=$TOKEN", "PLAIN=value", "LITERAL=$$"],
        "headers": {"Authorization": ["Bearer ${TOKEN}"], "X-Raw": "$TOKEN"},
        "url": "https://hooks.example/${TOKEN}/in",
        "exec-script": 'echo "$TOKEN"',  # the script's own variables are left alone
        "body-content": "${TOKEN}",
    }
    resolved = secrets.resolve(params, ENV)
    p = resolved.params
    assert (p["user"], p["password"]) == ("robot", "hunter22")
    assert p["env"] == ["API_KEY=t0p-s3cret", "PLAIN=value", "LITERAL=$$"]
    assert p["headers"] == {"Authorization": ["Bearer t0p-s3cret"], "X-Raw": ["t0p-s3cret"]}
    assert p["url"] == "https://hooks.example/t0p-s3cret/in"
    assert p["exec-script"] == 'echo "$TOKEN"' and p["body-content"] == "${TOKEN}"
    assert params["env"][0] == "API_KEY=$TOKEN"  # the command's params stay references


def test_missing_variable_names_it():
    with pytest.raises(secrets.MissingSecret, match=r"\$NOPE"):
        secrets.resolve({"token": "$NOPE"}, ENV)


def test_redaction_reaches_nested_values():
    resolved = secrets.resolve({"token": "$TOKEN"}, ENV)
    detail = {"stdout": "key=t0p-s3cret\n", "nested": [{"url": "x/t0p-s3cret"}], "n": 3}
    assert resolved.redact(detail) == {
        "stdout": "key=[redacted]\n",
        "nested": [{"url": "x/[redacted]"}],
        "n": 3,
    }
    assert resolved.redact(None) is None
