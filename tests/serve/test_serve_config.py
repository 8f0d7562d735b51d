"""``dbnet serve``'s start-up checks: limits that would lift themselves (``--max-upload-mb inf``) or
refuse every request (``--dpi 5000``) are refused at start; a bad ``$DBNET_SERVE_CONFIG`` is one
line; a POST sent by a web page of another site (``Origin`` not this server) is refused. No model
is loaded and no server started."""

from __future__ import annotations

import json

import pytest
from generated_files import invoke

pytest.importorskip("starlette")

from starlette.requests import Request  # noqa: E402

from dbcli.errors import DBNetError  # noqa: E402
from dbcli.serve.app import app_from_env, foreign_origin  # noqa: E402
from dbcli.serve.config import CONFIG_ENV, ServeConfig  # noqa: E402


@pytest.mark.parametrize("args, message", [
    (["--max-upload-mb", "inf"], "--max-upload-mb must be a finite number"),
    (["--max-upload-mb", "nan"], "--max-upload-mb must be positive"),
    (["--max-upload-mb", "-1"], "--max-upload-mb must be positive"),
    (["--max-megapixels", "inf"], "--max-megapixels must be a finite number"),
    (["--dpi", "5000"], "--dpi must lie in [18, 1200]"),
    (["--dpi", "5"], "--dpi must lie in [18, 1200]"),
])
def test_limits_refused_at_start(args, message):
    result = invoke("serve", *args)
    assert result.exit_code == 1 and message in result.output, result.output


def test_config_values_checked_in_the_api():
    with pytest.raises(DBNetError, match="finite"):
        ServeConfig(max_uploads_mb=float("inf"), max_upload_mb=float("inf"))
    assert ServeConfig(dpi=1200).dpi == 1200


@pytest.mark.parametrize("text, message", [
    ("{not json", "not JSON"),
    ('{"port": 1, "colour": 2}', "unknown settings colour"),
    ('{"max_upload_mb": "lots"}', "must be positive, got 'lots'"),
    ('{"dpi": 5000}', "--dpi must lie in"),
    ('{"inference": [1]}', "(not an object)"),
])
def test_a_bad_config_in_the_environment_is_one_line(monkeypatch, capsys, text, message):
    monkeypatch.setenv(CONFIG_ENV, text)
    with pytest.raises(SystemExit) as info:
        app_from_env()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: ${CONFIG_ENV}") and message in err and err.count("\n") == 1, err


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/detect", "headers": raw, "query_string": b""})


@pytest.mark.parametrize("headers, refused", [
    ({"Host": "127.0.0.1:8000"}, False),  # curl, a script: no Origin
    ({"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"}, False),  # the service's own page
    ({"Host": "localhost:8000", "Origin": "http://LOCALHOST:8000"}, False),
    ({"Host": "127.0.0.1:8000", "Origin": "https://evil.example"}, True),
    ({"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:9999"}, True),  # another port: another site
    ({"Host": "127.0.0.1:8000", "Origin": "null"}, True),  # a sandboxed frame or a file:// page
])
def test_cross_origin_posts_are_refused(headers, refused):
    reason = foreign_origin(_request(headers))
    assert (reason is not None) == refused
    if refused:
        assert headers["Origin"] in reason


def test_config_round_trips_through_the_environment(monkeypatch):
    config = ServeConfig(dpi=300, max_upload_mb=10)
    monkeypatch.setenv(CONFIG_ENV, config.to_env())
    assert ServeConfig.from_env() == config
    assert json.loads(config.to_env())["dpi"] == 300
