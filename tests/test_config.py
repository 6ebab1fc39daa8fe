"""Configuration: one model, read from defaults, .env, environment and flags, documented in CONFIG.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import Settings

REPO = Path(__file__).resolve().parent.parent
CONTRACT = {
    "VECTRA_SOURCE": "socketio",
    "VECTRA_FEED_URL": "https://backend.rugs.fun?frontend-version=1.0",
    "VECTRA_DATA_DIR": "~/.local/share/vectra",
    "VECTRA_HTTP_HOST": "127.0.0.1",
    "VECTRA_HTTP_PORT": "8765",
    "VECTRA_ZMQ_PUB": "tcp://127.0.0.1:5556",
    "VECTRA_ZMQ_ROUTER": "tcp://127.0.0.1:5557",
    "VECTRA_RECORD": "false",
    "VECTRA_CHROME_BINARY": "",
    "VECTRA_CHROME_PROFILE": "~/.gamebot/chrome_profiles/rugs_bot",
    "VECTRA_CDP_PORT": "9222",
    "VECTRA_LOG_LEVEL": "INFO",
}


def vectra(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VECTRA_")}
    return subprocess.run([sys.executable, "-m", "vectra_cli", *args], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def config_lines(output: str) -> dict[str, tuple[str, str]]:
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(VECTRA_\w+)\s+(.*?)\s*\((default|\.env|environment|flag)\)$", line)
        if match:
            found[match[1]] = (match[2], match[3])
    return found


def test_config_shows_every_value_and_where_it_came_from(tmp_path):
    (tmp_path / ".env").write_text("VECTRA_CDP_PORT=9333\nVECTRA_HTTP_PORT=1111\n")
    result = vectra("config", "--source", "cdp", cwd=tmp_path,
                    env={"VECTRA_HTTP_PORT": "9999", "VECTRA_AUTH_TOKEN": "s3cret-token", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    shown = config_lines(result.stdout)
    assert set(shown) == {"VECTRA_" + name.upper() for name in Settings.model_fields}
    assert shown["VECTRA_SOURCE"] == ("cdp", "flag")
    assert shown["VECTRA_HTTP_PORT"] == ("9999", "environment")
    assert shown["VECTRA_CDP_PORT"] == ("9333", ".env")
    assert shown["VECTRA_LOG_LEVEL"] == ("INFO", "default")
    assert shown["VECTRA_DATA_DIR"] == (f"{tmp_path}/.local/share/vectra", "default")
    assert "s3cret-token" not in result.stdout and shown["VECTRA_AUTH_TOKEN"][1] == "environment"


@pytest.mark.parametrize(
    "env, flag, variable",
    [
        ({"VECTRA_HTTP_PORT": "abc"}, [], "VECTRA_HTTP_PORT"),
        ({"VECTRA_SOURCE": "carrier-pigeon"}, [], "VECTRA_SOURCE"),
        ({}, ["--cdp-port", "70000"], "VECTRA_CDP_PORT"),
        ({"VECTRA_RECORD": "perhaps"}, [], "VECTRA_RECORD"),
        ({"VECTRA_LOG_LEVEL": "loud"}, [], "VECTRA_LOG_LEVEL"),
    ],
)
def test_invalid_value_stops_start_up_with_one_clear_line(tmp_path, env, flag, variable):
    result = vectra("--daemon", *flag, cwd=tmp_path, env={**env, "VECTRA_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert variable in lines[0] and "accepted" in lines[0]


def test_contract_names_and_defaults(tmp_path):
    shown = config_lines(vectra("config", cwd=tmp_path, env={"HOME": "~"}).stdout)
    for name, default in CONTRACT.items():
        value = shown[name][0]
        assert value.lower() == default.lower(), f"{name}: {value!r} != {default!r}"


def test_config_document_matches_the_model():
    cell = r"((?:[^|\\]|\\\|)*)"  # a table cell; `\|` is an escaped pipe inside it
    rows = re.findall(rf"^\| `(VECTRA_\w+)` \| {cell} \| {cell} \|", (REPO / "docs" / "CONFIG.md").read_text(), re.M)
    documented = {name: default.strip().strip("`") for name, _, default in rows}
    assert set(documented) == {"VECTRA_" + field.upper() for field in Settings.model_fields}
    for field, spec in Settings.model_fields.items():
        default = "" if spec.default is None else str(spec.default)
        assert documented["VECTRA_" + field.upper()] == default, field
