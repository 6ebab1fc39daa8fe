"""The console driven with Textual's Pilot against the fake foundation: keys, panels, log, screenshots."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.widgets import Static

import themes

from core.contracts.envelope import Envelope
from core.contracts.health import SourceConnection
from vectra_tui.digest import EventDigest
from vectra_tui.app import ConfirmScreen, HelpScreen, VectraConsole
from vectra_tui.keymap import KeymapError, parse_keymap
from tests.fakes import FROZEN_NOW_MS, GAME_ID, FakeFoundation
from vectra_tui.panels import Panel

SIZE = (100, 30)
REPO = Path(__file__).resolve().parent.parent


async def press_and_settle(pilot, *keys: str) -> None:
    """Press keys, let the commands they start finish, and let the screen catch up."""
    await pilot.press(*keys)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def shown(app: VectraConsole, panel_id: str) -> str:
    """The text a panel puts on the screen right now (border and title included), as the operator reads it."""
    panel = app.query_one(f"#{panel_id}", Panel)
    return "\n".join(strip.text for strip in panel.render_lines(Region(0, 0, *panel.outer_size)))


def log_lines(app: VectraConsole) -> list[str]:
    """The event log's rows, without its border."""
    return [line.strip("│ ") for line in shown(app, "log").splitlines()[1:-1] if line.strip("│ ")]


def event(seq: int, channel: str, game: str | None = None, **data) -> Envelope:
    return Envelope(seq=seq, type=channel, timestamp=FROZEN_NOW_MS + seq, gameId=game, source="socketio", data=data)


@pytest.fixture
def fake() -> FakeFoundation:
    return FakeFoundation()


async def test_panels_show_what_the_foundation_reports(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert fake.started
        connection = shown(app, "connection")
        assert "connected" in connection and "backend.rugs.fun" in connection and "reconnects 2" in connection
        assert "p99 1.35 ms" in shown(app, "latency")
        game = shown(app, "game")
        assert "20251124-5f1c0e2a9b7d4c36" in game and "ACTIVE" in game and "tick 139" in game and "3.410x" in game
        assert "5.830x@212" in game
        rates = shown(app, "rates")
        assert "player    12.5/s" in rates and "total 123.5k" in rates
        assert "off" in shown(app, "recording")
        subscribers = shown(app, "subscribers")
        assert "ws 3" in subscribers and "zmq 2" in subscribers and "cut off 1" in subscribers
        assert "pid 4242" in shown(app, "chrome") and "user operator" in shown(app, "chrome")
        assert "1060 game.tick" in shown(app, "log")


async def test_unreachable_feed_and_daemon_are_said_plainly(fake):
    refused = SourceConnection(
        state="reconnecting", url="https://backend.rugs.fun", reason="Connection refused", attempt=3,
        connected_since=None, reconnects=0,
    )
    connection = fake.report.connection.model_copy(update={"state": "reconnecting", "sources": {"socketio": refused}})
    fake.update(status="down", connection=connection)
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "socketio unreachable: Connection refused" in shown(app, "connection")
        fake.unreachable = "daemon unreachable, retrying in 1.0 s: ws://x/ws refused"
        await pilot.pause(0.3)
        assert "daemon unreachable, retrying in 1.0 s" in shown(app, "connection")


async def test_r_flips_recording_in_the_foundation(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        await press_and_settle(pilot, "r")
        assert fake.commands[-1] == {"action": "record", "on": True}
        assert fake.report.recording.on
        assert "REC" in shown(app, "recording")
        await press_and_settle(pilot, "r")
        assert fake.commands[-1] == {"action": "record", "on": False}
        assert "off" in shown(app, "recording")


async def test_c_reconnects_and_b_relaunches_the_browser(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        await press_and_settle(pilot, "c")
        assert fake.commands == [{"action": "reconnect"}]
        assert "reconnects 3" in shown(app, "connection")
        await pilot.press("b")
        await app.workers.wait_for_complete()
        assert fake.commands[-1] == {"action": "chrome", "op": "relaunch"}


async def test_a_refused_command_is_reported_not_swallowed(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        app.run_worker(app._send("launch_rockets", "ok"))
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert any("unknown action" in str(note.message) for note in app._notifications)


async def test_q_shuts_the_foundation_down(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert fake.stopped
    assert app.return_code == 0


async def test_the_player_panel_shows_the_desk_the_player_and_the_orders_from_the_channels():
    app = VectraConsole(FakeFoundation(trading=True))
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        panel = shown(app, "player")
        assert "orders live  via page" in panel
        assert "bot1 cash 0.9980  pos 0.0006  avg 3.380x" in panel
        assert "PnL +0.0000 (+0.8%)" in panel
        assert "→ sell sent  bot1-0003" in panel
        assert "✗ sidebet rejected limit_rate  bot1-0002" in panel
        assert "✓ buy filled 3.380x  bot1-0001" in panel
        assert panel.index("✗ sidebet") < panel.index("✓ buy")  # newest outcome first


async def test_an_order_acked_without_its_trade_leaves_the_orders_in_flight_once_it_is_unsettled():
    """The sell in flight is acked, then `order.unsettled`: no more events will come for it, so the
    panel no longer shows it waiting; it is listed as unsettled with the reason, not as a fill."""
    fake = FakeFoundation(trading=True)
    app = VectraConsole(fake)
    async with app.run_test(size=(160, 36)) as pilot:
        await pilot.pause()
        assert "→ sell sent  bot1-0003" in shown(app, "player")
        order = {"order_id": "bot1-0003", "kind": "sell", "dryRun": False, "ackId": 900000001}
        fake.publish(event(2000, "order.ack", GAME_ID, **order, ack=[{"success": True}], success=True, latency_ms=180.0))
        await pilot.pause(0.3)
        assert "→ sell acked  bot1-0003" in shown(app, "player")
        why = "the server acked it with success, yet the player's account shows positionQty unchanged"
        fake.publish(event(2001, "order.unsettled", GAME_ID, **order, reason=why))
        await pilot.pause(0.3)
        panel = shown(app, "player")
        assert "→ sell" not in panel, "no longer in flight"
        assert "? sell unsettled   bot1-0003  the server acked it" in panel, "with its reason, as far as it fits"
        assert panel.index("? sell unsettled") < panel.index("✗ sidebet"), "the newest outcome first"
        assert "✓ sell" not in panel


async def test_a_timeout_a_restart_could_not_settle_leaves_the_orders_in_flight():
    """After a restart, an order whose outcome the account cannot tell gets `order.timeout` with a
    `reason`: the last word on it. The panel stops showing it waiting and lists it with the reason;
    a timeout within a run (no reason: its playerUpdate is still to come) stays in flight."""
    fake = FakeFoundation(trading=True)
    app = VectraConsole(fake)
    async with app.run_test(size=(160, 36)) as pilot:
        await pilot.pause()
        order = {"order_id": "bot1-0003", "kind": "sell", "dryRun": False, "ackId": 900000001}
        fake.publish(event(2000, "order.timeout", GAME_ID, **order, waited_ms=4000.0))
        await pilot.pause(0.3)
        assert "→ sell timeout  bot1-0003" in shown(app, "player"), "still waiting for its playerUpdate"
        why = "its game ended before Vectra saw the player's state again"
        fake.publish(event(2001, "order.timeout", GAME_ID, **order, waited_ms=90000.0, reason=why))
        await pilot.pause(0.3)
        panel = shown(app, "player")
        assert "→ sell" not in panel, "no longer in flight"
        assert "? sell unsettled   bot1-0003  its game ended" in panel, "with its reason, as far as it fits"


async def test_without_an_order_desk_there_is_no_player_panel_and_no_order_keys(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert not app.query_one("#player", Panel).display
        await press_and_settle(pilot, "h", "u")
        assert fake.commands == [] and not isinstance(app.screen, ConfirmScreen)


async def test_h_halts_orders_at_once_and_u_resumes_only_when_confirmed():
    fake = FakeFoundation(trading=True)
    app = VectraConsole(fake, keymap=parse_keymap("resume=ctrl+u", VectraConsole.BINDINGS))
    async with app.run_test(size=(120, 36)) as pilot:
        await press_and_settle(pilot, "h")
        assert fake.commands == [{"action": "orders_halt", "reason": "console"}]
        assert "■ HALTED  every order refused" in shown(app, "player")
        assert app.query_one("#player", Panel).has_class("-halted")

        await pilot.press("u")  # remapped away: nothing happens
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("ctrl+u")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await press_and_settle(pilot, "n")
        assert len(fake.commands) == 1 and fake.report.orders.halted
        assert "HALTED" in shown(app, "player")

        await pilot.press("ctrl+u")
        await pilot.pause()
        await press_and_settle(pilot, "y")
        assert fake.commands[-1] == {"action": "orders_resume"}
        assert "HALTED" not in shown(app, "player") and not app.query_one("#player", Panel).has_class("-halted")


async def test_log_filter_shows_only_matching_channels(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"player.*")
        app.query_one("#log-filter").value += " error"
        await pilot.press("enter")
        await pilot.pause()
        lines = log_lines(app)
        assert lines and all((" player." in line or " error " in line) for line in lines)
        assert app.query_one("#log").border_subtitle.startswith("player.* error")
        fake.publish(event(2000, "game.tick", tickCount=1, price=1.0, phase="ACTIVE"), event(2001, "error", code="x", message="late one"))
        await pilot.pause(0.2)
        assert "late one" in shown(app, "log") and "2000" not in shown(app, "log")
        await pilot.press("slash", "escape")
        assert app.event_log.pattern == "player.* error"
        await pilot.press("slash")
        app.query_one("#log-filter").value = ""
        await pilot.press("enter")
        await pilot.pause()
        assert "2000 game.tick" in shown(app, "log")


async def test_space_pauses_and_resumes_the_log(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("space")
        fake.publish(event(3000, "game.tick", tickCount=7, price=2.0, phase="ACTIVE"))
        await pilot.pause(0.3)
        assert "3000" not in shown(app, "log")
        assert "PAUSED" in app.query_one("#log").border_subtitle
        await pilot.press("space")
        await pilot.pause()
        assert "3000 game.tick" in shown(app, "log")


async def test_t_switches_theme_and_question_mark_opens_help(fake):
    app = VectraConsole(fake, theme="dark")
    async with app.run_test(size=SIZE) as pilot:
        dark_background = app.screen.styles.background
        await pilot.press("t")
        await pilot.pause()
        assert app.theme_name == "light" and app.has_class("-vectra-light")
        assert app.screen.styles.background != dark_background
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        assert not fake.stopped


async def test_a_remapped_key_does_what_the_original_key_did(fake):
    keymap = parse_keymap("record=ctrl+r, pause=p, quit=ctrl+q,f10", VectraConsole.BINDINGS)
    app = VectraConsole(fake, keymap=keymap)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")  # the default key is given up
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert fake.commands == [] and not fake.report.recording.on
        await press_and_settle(pilot, "ctrl+r")
        assert fake.commands[-1] == {"action": "record", "on": True}
        assert "REC" in shown(app, "recording")
        await pilot.press("p")
        assert app.event_log.paused
        await pilot.press("question_mark")
        await pilot.pause()
        help_text = str(app.screen.query_one("#help-body", Static).render())
        assert "^r" in help_text and "^q f10" in help_text
        await pilot.press("escape")
        await pilot.press("q")  # no longer quits
        await pilot.pause()
        assert not fake.stopped
        await pilot.press("f10")
        await pilot.pause()
        assert fake.stopped


@pytest.mark.parametrize(
    "text, named",
    [("recrod=r", "recrod"), ("record=ctrl+nope", "ctrl+nope"), ("record=hyperdrive", "hyperdrive"), ("r", "'r'")],
)
def test_a_keymap_naming_no_binding_or_no_key_is_refused(text, named):
    with pytest.raises(KeymapError, match=re.escape(named)):
        parse_keymap(text, VectraConsole.BINDINGS)


def test_the_documented_console_keys_and_themes_are_the_registered_ones():
    document = (REPO / "docs" / "CONFIG.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| `([^`]+)` \|", document, re.M)
    assert rows == [(binding.id, binding.key_display or binding.key) for binding in VectraConsole.BINDINGS]
    theme_row = re.search(r"^\| `VECTRA_THEME` .*$", document, re.M)[0]
    assert set(re.findall(r"today (.*)\)", theme_row)[0].replace("`", "").split(", ")) == set(themes.THEMES)


async def test_the_console_never_asks_for_one_update_per_event(fake):
    """A burst of events reaches the screen through the periodic snapshot only."""
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        before = fake.snapshots_taken
        fake.publish(*(event(5000 + i, "raw.gameStateUpdate", payload={}) for i in range(500)))
        await pilot.pause(0.5)
        assert fake.snapshots_taken - before < 50
        assert "5499 raw.gameStateUpdate" in shown(app, "log")


async def test_before_the_start_the_game_panel_counts_down_and_shows_the_last_results(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        assert "▇" in shown(app, "game") or "█" in shown(app, "game"), "a running game draws its price chart"
        fake.publish(event(2000, "game.end", GAME_ID, finalTick=139, finalPrice=0.002, peakPrice=4.2))
        fake.publish(event(2001, "game.tick", "20251124-next", tickCount=None, price=None, phase="PRESALE", cooldownTimer=7400))
        await pilot.pause(0.3)
        game = shown(app, "game")
        assert "20251124-next" in game and "PRESALE" in game and "starts in 7.4 s" in game
        lines = game.splitlines()
        newest = next(index for index, line in enumerate(lines) if "4.200x peak" in line)
        assert "rug @139" in lines[newest] and "final 0.002x" in lines[newest]
        assert "5.830x peak" in lines[newest + 1] and "rug @212" in lines[newest + 1], "newest result first"
        assert "█" not in game and "▇" not in game, "no empty chart before the start"
        fake.publish(event(2002, "game.tick", "20251124-next", tickCount=None, price=None, phase="PRESALE", cooldownTimer=3100))
        await pilot.pause(0.3)
        assert "starts in 3.1 s" in shown(app, "game")


async def test_the_latency_panel_shows_a_feed_round_trip_only_when_one_is_measured(fake):
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert fake.report.latency_ms.feed_rtt is None
        latency = shown(app, "latency")
        assert "feed RTT" not in latency and "p50 0.21 ms" in latency
        fake.update(latency_ms=fake.report.latency_ms.model_copy(update={"feed_rtt": 42.0}))
        fake.advance(1.0)  # the latency figures are sampled once a second
        await pilot.pause(0.3)
        assert "feed RTT 42.00 ms" in shown(app, "latency")


async def test_the_recording_panel_counts_the_write_ahead_log_in_the_size(fake):
    recording = fake.report.recording.model_copy(
        update={"on": True, "state": "recording", "rows": 195, "bytes": 0, "wal_bytes": 419_294}
    )
    fake.update(recording=recording)
    app = VectraConsole(fake)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "rows 195  size 409.5 kB" in shown(app, "recording")
        fake.update(recording=recording.model_copy(update={"rows": 1200, "bytes": 65_536, "wal_bytes": 90_000}))
        await pilot.pause(0.3)
        assert "rows 1.2k  size 151.9 kB" in shown(app, "recording")


def test_the_game_panel_follows_games_from_the_event_stream():
    digest = EventDigest(clock=lambda: 0.0)
    seq = 0
    for game, peak in (("g1", 2.5), ("g2", 7.0)):
        for tick, price in enumerate((1.0, peak, 0.01)):
            seq += 1
            digest.deliver(event(seq, "game.tick", game, tickCount=tick, price=price, phase="ACTIVE"))
        seq += 1
        digest.deliver(event(seq, "game.end", game, finalTick=2, finalPrice=0.01, peakPrice=peak))
    seq += 1
    digest.deliver(event(seq, "game.tick", "g3", tickCount=0, price=1.0, phase="PRESALE"))
    view = digest.game_view()
    assert (view.game_id, view.phase, view.tick, view.price, view.price_path) == ("g3", "PRESALE", 0, 1.0, (1.0,))
    assert [(r.game_id, r.peak_price, r.final_tick) for r in view.recent_results] == [("g2", 7.0, 2), ("g1", 2.5, 2)]
    assert digest.counts == {"game": seq}


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_main_screen_snapshot(snap_compare, theme, size):
    assert snap_compare(VectraConsole(FakeFoundation(), theme=theme), terminal_size=size)


def test_player_panel_snapshot(snap_compare):
    """A daemon with an order desk, halted: the Player panel says so loudly."""

    async def halt(pilot) -> None:  # noqa: ANN001 - Textual's Pilot
        await pilot.press("h")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(VectraConsole(FakeFoundation(trading=True)), terminal_size=(120, 36), run_before=halt)
