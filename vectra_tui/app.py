"""The operator's console: every part of the foundation on one screen, driven from the keyboard.

The app pulls one snapshot from its port at a fixed rate and updates the panels inside a single
batch, whatever the event rate (the memray live-TUI pattern): the feed can run at thousands of events
a second without the console doing per-event work. Commands run as workers, so a slow reply (a remote
daemon) never freezes the screen; the screen is refreshed as soon as a command returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Input, Static

import themes
from core.datadir_lock import claim_data_dir
from vectra_tui.event_log import EventLog
from vectra_tui.keymap import KeymapError, parse_keymap
from vectra_tui.panels import (
    ChromePanel,
    ConnectionPanel,
    GamePanel,
    LatencyPanel,
    LogPanel,
    Panel,
    PlayerPanel,
    RatesPanel,
    RecordingPanel,
    SubscribersPanel,
)
from vectra_tui.port import FoundationPort
from vectra_tui.view import ConsoleSnapshot

REFRESH_HZ = 10
ORDER_ACTIONS = frozenset({"halt_orders", "resume_orders"})


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", key_display="?"),
        Binding("q", "dismiss", "Close"),
    ]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"  {key:<6} {description}" for key, description in self.keys)
        yield Static(f"Keys\n\n{rows}\n\n  Esc or ? closes this help.", id="help-body")


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; only `y` says yes."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(f"{self.question}\n\n  y: yes    n or Esc: no", id="confirm-body")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class VectraConsole(App[int]):
    TITLE = "Vectra"
    AUTO_FOCUS = None
    ENABLE_COMMAND_PALETTE = False
    CSS_PATH = [Path(__file__).resolve().parent / "console.tcss", *themes.stylesheets()]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]
    BINDINGS = [
        Binding("r", "toggle_recording", "Record", id="record", tooltip="recording on/off (every event to Parquet)"),
        Binding("c", "reconnect", "Reconnect", id="reconnect", tooltip="drop the feed connection and connect again now"),
        Binding("b", "browser", "Browser", id="browser", tooltip="launch or relaunch the rugs_bot browser"),
        Binding("h", "halt_orders", "Halt", id="halt", tooltip="kill switch: refuse every new order until resumed"),
        Binding("u", "resume_orders", "Resume", id="resume", tooltip="lift the kill switch (asks first)"),
        Binding("slash", "filter", "Filter", id="filter", key_display="/", tooltip="show only channels matching globs"),
        Binding("space", "pause", "Pause", id="pause", tooltip="freeze the event log / follow it again"),
        Binding("t", "next_theme", "Theme", id="theme", tooltip="switch to the next colour theme"),
        Binding("question_mark", "help", "Help", id="help", key_display="?", tooltip="this help"),
        Binding("q", "quit", "Quit", id="quit", tooltip="stop the foundation cleanly (recording flushed) and leave"),
    ]

    def __init__(
        self,
        port: FoundationPort,
        *,
        theme: str = "dark",
        keymap: Mapping[str, str] | None = None,
        refresh_hz: float = REFRESH_HZ,
    ) -> None:
        super().__init__()
        self.port = port
        self.theme_name = themes.checked(theme)
        self.set_keymap(dict(keymap or {}))
        self.refresh_hz = refresh_hz
        self.event_log = EventLog()
        self.latest: ConsoleSnapshot | None = None
        self._stopping = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top", classes="row"):
            yield ConnectionPanel("Connection", id="connection")
            yield LatencyPanel("Latency", id="latency")
        with Horizontal(id="middle", classes="row"):
            yield GamePanel("Game", id="game")
            yield RatesPanel("Events / s", id="rates")
            yield PlayerPanel("Player", id="player")
        with Horizontal(id="bottom", classes="row"):
            yield RecordingPanel("Recording", id="recording")
            yield SubscribersPanel("Subscribers", id="subscribers")
            yield ChromePanel("Chrome", id="chrome")
        yield LogPanel(self.event_log, id="log")
        yield Input(
            placeholder="channels to show, e.g. game.* error  (empty: all; Esc cancels)",
            id="log-filter",
            disabled=True,
        )
        yield Footer(compact=True)

    async def on_mount(self) -> None:
        self._apply_theme(self.theme_name)
        self.log_panel = self.query_one(LogPanel)
        self.panels = [panel for panel in self.query(Panel) if panel is not self.log_panel]
        self.filter_input = self.query_one("#log-filter", Input)
        try:
            await self.port.start()
        except Exception as exc:
            self.exit(return_code=1, message=f"vectra: cannot start: {exc}")
            return
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: self.run_worker(self.action_quit()))
        self.refresh_view()
        self.set_interval(1 / self.refresh_hz, self.refresh_view)

    # --- drawing --------------------------------------------------------------------------------

    def refresh_view(self) -> None:
        snapshot = self.port.snapshot()
        desk_changed = self.latest is None or self.latest.player.available != snapshot.player.available
        self.latest = snapshot
        if desk_changed:
            self.refresh_bindings()
        self.event_log.take(snapshot.events)
        with self.batch_update():
            if self.sub_title != snapshot.mode:
                self.sub_title = snapshot.mode
            for panel in self.panels:
                panel.show(getattr(snapshot, panel.shows))
            self.log_panel.show_log()

    def _apply_theme(self, name: str) -> None:
        for known in themes.THEMES:
            self.set_class(known == name, themes.css_class(known))
        self.theme = themes.THEMES[name]
        self.theme_name = name

    # --- commands -------------------------------------------------------------------------------

    async def _send(self, action: str, done: str, **params: Any) -> dict[str, Any]:
        reply = await self.port.command(action, **params)
        if reply.get("type") == "error":
            data = reply.get("data") or {}
            self.notify(f"{action}: {data.get('message', data)}", severity="error", timeout=6)
        else:
            self.notify(done, timeout=3)
        self.refresh_view()
        return reply

    def action_toggle_recording(self) -> None:
        on = not (self.latest is not None and self.latest.recording.on)
        self.run_worker(self._send("record", "recording on" if on else "recording off", on=on), group="commands")

    def action_reconnect(self) -> None:
        self.run_worker(self._send("reconnect", "reconnecting the feed now"), group="commands")

    def action_browser(self) -> None:
        self.run_worker(self._send("chrome", "browser (re)launch requested", op="relaunch"), group="commands")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The order keys exist only where there is an order desk (False: neither shown nor bound)."""
        if action in ORDER_ACTIONS:
            return self.latest is not None and self.latest.player.available
        return True

    def action_halt_orders(self) -> None:
        """At once, no question asked: stopping must always be the easy way."""
        self.run_worker(self._send("orders_halt", "orders halted: every new order is refused", reason="console"),
                        group="commands")

    def action_resume_orders(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._send("orders_resume", "orders resumed"), group="commands")

        self.push_screen(ConfirmScreen("Resume orders? Bots can trade again at once."), answered)

    # --- the log ----------------------------------------------------------------------------------

    def action_filter(self) -> None:
        self.filter_input.value = "" if self.event_log.pattern == "*" else self.event_log.pattern
        self.filter_input.disabled = False
        self.filter_input.add_class("-open")
        self.filter_input.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        held = self.latest.events if self.latest is not None else ()
        try:
            self.event_log.set_filter(event.value, held)
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        self._close_filter()
        self.log_panel.show_log()

    def on_key(self, event: Any) -> None:
        if event.key == "escape" and self.filter_input.has_focus:
            self._close_filter()
            event.stop()

    def _close_filter(self) -> None:
        self.filter_input.remove_class("-open")
        self.filter_input.disabled = True
        self.set_focus(None)

    def action_pause(self) -> None:
        paused = self.event_log.toggle_pause()
        if not paused and self.latest is not None:
            self.event_log.take(self.latest.events)
        self.log_panel.show_log()

    # --- the rest -------------------------------------------------------------------------------

    def action_next_theme(self) -> None:
        self._apply_theme(themes.following(self.theme_name))

    def action_help(self) -> None:
        """The keys as they are bound now, the keymap applied."""
        bound: dict[str, list[str]] = {}
        for active in self.active_bindings.values():
            if active.binding.id is not None:
                bound.setdefault(active.binding.id, []).append(self.get_key_display(active.binding))
        keys = [(" ".join(bound.get(binding.id or "", ["-"])), binding.tooltip or binding.description) for binding in self.BINDINGS]
        self.push_screen(HelpScreen(keys))

    async def action_quit(self) -> None:
        """Stop the foundation (which flushes the recorder) before the screen goes away."""
        if self._stopping:
            return
        self._stopping = True
        self.sub_title = "shutting down…"
        await self.port.stop()
        self.exit(0)


async def serve(app: VectraConsole) -> int:
    """Run the console; however it ends, its port is stopped before this returns."""
    try:
        await app.run_async()
    finally:
        await app.port.stop()
    return app.return_code or 0


def run_console(settings: Any) -> int:
    """`vectra`: the console with the foundation running in this process, so it holds the data folder
    as the daemon does; beside a daemon on the same folder it stops at once (`vectra attach` is the
    console for that daemon)."""
    from vectra_tui.embedded import EmbeddedFoundation

    log_path = settings.data_dir / "console.log"
    claim_data_dir(settings.data_dir)
    return _run(lambda: EmbeddedFoundation(settings), settings, log_path)


def run_attach(url: str, token: str | None, settings: Any) -> int:
    """`vectra attach URL`: the console for a daemon that runs elsewhere."""
    from vectra_tui.remote import RemoteFoundation

    log_path = settings.data_dir / "attach.log"
    return _run(lambda: RemoteFoundation(url, token), settings, log_path)


def _log_to_file(path: Path) -> None:
    """The screen belongs to the console, so the log goes to a file (its level is kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().handlers[:] = [handler]


def _run(make_port: Callable[[], FoundationPort], settings: Any, log_path: Path) -> int:
    """The theme and keymap are checked before anything starts: a typo is one line and exit 2."""
    try:
        theme = themes.checked(settings.theme)
        keymap = parse_keymap(settings.keymap, VectraConsole.BINDINGS)
    except (themes.UnknownTheme, KeymapError) as exc:
        print(f"vectra: {exc}", file=sys.stderr)
        return 2
    _log_to_file(log_path)

    async def main() -> int:
        return await serve(VectraConsole(make_port(), theme=theme, keymap=keymap))

    return asyncio.run(main())
