"""The command line as a person reads it: commands first, settings by area, each command only what it reads;
secrets never taken as flags."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import AREAS, Settings, area_of

COMMANDS = ("config", "health", "tail", "attach", "record", "replay", "chrome", "sim", "order", "orders", "player")


def vectra(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VECTRA_")}
    return subprocess.run([sys.executable, "-m", "vectra_cli", *args], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def flags_in(help_text: str) -> set[str]:
    return set(re.findall(r"^  (--[a-z0-9-]+)", help_text, re.M))


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def test_every_setting_belongs_to_a_known_area():
    assert {field: area_of(field) for field in Settings.model_fields if area_of(field) not in AREAS} == {}


def test_main_help_lists_the_commands_first_then_every_setting_by_area(tmp_path):
    result = vectra("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert len(text.splitlines()[0]) <= 100  # the usage line no longer spells out every setting
    first_setting = text.index("settings:")
    listed = [line.split()[0] for line in text[:first_setting].splitlines() if re.match(r"^  [a-z]+  ", line)]
    assert listed == list(COMMANDS)  # one line each, all before any setting
    headings = re.findall(r"^(\w+) settings:$", text, re.M)
    assert headings == list(AREAS)
    secrets = {field for field, spec in Settings.model_fields.items() if "SecretStr" in str(spec.annotation)}
    assert "auth_token" in secrets
    assert flags_in(text) >= {flag(field) for field in Settings.model_fields if field not in secrets}
    sections = re.split(r"^(\w+) settings:$", text, flags=re.M)[1:]
    for area, body in zip(sections[::2], sections[1::2]):
        assert all(area_of(f[2:].replace("-", "_")) == area for f in flags_in(body) if f != "--help")


@pytest.mark.parametrize(
    "command, reads",
    [
        (["tail"], {"--zmq-pub", "--zmq-router", "--heartbeat-s", "--from-seq"}),
        (["record"], {"--zmq-router", "--auth-token-file", "--json"}),
        (["health"], {"--http-host", "--http-port"}),
    ],
)
def test_a_command_help_is_short_and_lists_only_what_it_reads(tmp_path, command, reads):
    result = vectra(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    offered = flags_in(result.stdout)
    assert reads <= offered
    assert not offered & {"--source", "--record-flush-s", "--chrome-profile", "--ring-size", "--theme"}
    assert len(result.stdout.splitlines()) < 40


@pytest.mark.parametrize(
    "command, reads",
    [
        (["health"], {"--http-host", "--http-port"}),
        (["tail"], {"--zmq-pub", "--zmq-router", "--heartbeat-s"}),
        (["record"], {"--zmq-router", "--auth-token-file"}),
        (["orders"], {"--zmq-router", "--auth-token-file"}),
        (["attach"], {"--http-host", "--http-port", "--auth-token-file", "--data-dir", "--theme", "--keymap"}),
    ],
)
def test_a_command_offers_no_setting_it_does_not_read(tmp_path, command, reads):
    """Not the whole area a setting sits in: `vectra health` finds the daemon over HTTP, so
    `--zmq-pub` is nothing to it."""
    result = vectra(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert flags_in(result.stdout) & {flag(field) for field in Settings.model_fields} == reads


def test_a_flag_a_command_does_not_read_is_refused(tmp_path):
    result = vectra("tail", "--record-rotate-mb", "5", cwd=tmp_path)
    assert result.returncode == 2 and "--record-rotate-mb" in result.stderr


def test_record_without_a_daemon_exits_2_like_the_other_daemon_commands(tmp_path):
    from tests.conftest import free_port

    result = vectra("record", "--zmq-router", f"tcp://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert result.returncode == 2 and "no daemon answered" in result.stderr


@pytest.mark.parametrize(
    "given", [["--auth-token", "s3cret-token"], ["--auth-token=s3cret-token"], ["--auth-tok", "s3cret-token"]]
)
def test_a_secret_given_as_a_flag_is_refused_naming_the_variables(tmp_path, given):
    result = vectra(*given, "config", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "VECTRA_AUTH_TOKEN " in lines[0] + " " and "VECTRA_AUTH_TOKEN_FILE" in lines[0]
    assert "s3cret-token" not in result.stderr + result.stdout


def test_the_token_comes_from_a_file_and_stays_masked(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("  s3cret-token\n")
    env = {"VECTRA_AUTH_TOKEN_FILE": str(secret), "HOME": str(tmp_path)}
    result = vectra("config", "--http-host", "0.0.0.0", cwd=tmp_path, env=env)  # off loopback: the token is set
    assert result.returncode == 0, result.stderr
    assert "s3cret-token" not in result.stdout
    assert re.search(r"^VECTRA_AUTH_TOKEN\s+\*+\s+\(file\)$", result.stdout, re.M)


def test_a_password_inside_a_server_url_is_masked_too(tmp_path):
    env = {"VECTRA_SOURCE": "nats", "VECTRA_FEED_URL": "nats://bot:hunter2@10.0.0.5:4222,nats://bot:hunter2@10.0.0.6:4222",
           "HOME": str(tmp_path)}
    result = vectra("config", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert "nats://bot:********@10.0.0.5:4222,nats://bot:********@10.0.0.6:4222" in result.stdout


@pytest.mark.parametrize("content", [None, ""])
def test_an_unreadable_or_empty_token_file_stops_start_up_in_one_line(tmp_path, content):
    secret = tmp_path / "token"
    if content is not None:
        secret.write_text(content)
    result = vectra("--daemon", cwd=tmp_path, env={"VECTRA_AUTH_TOKEN_FILE": str(secret), "VECTRA_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "VECTRA_AUTH_TOKEN_FILE" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "env, named",
    [
        ({"VECTRA_KEYMAP": "recrod=ctrl+r"}, "recrod"),
        ({"VECTRA_KEYMAP": "record=ctrl+bogus"}, "ctrl+bogus"),
        ({"VECTRA_KEYMAP": "ctrl+r"}, "ctrl+r"),
        ({"VECTRA_THEME": "neon"}, "neon"),
    ],
)
def test_a_bad_keymap_or_theme_stops_the_console_at_start_in_one_line(tmp_path, env, named):
    result = vectra(cwd=tmp_path, env={**env, "VECTRA_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in result.stderr
