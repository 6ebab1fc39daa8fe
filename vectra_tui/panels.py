"""The console's panels: each draws one part of the snapshot as text sized to its box.

A panel keeps the last view it was given and redraws only when a new one differs, so a quiet panel
costs nothing at the refresh rate. Colours come from component classes (`panel--good` etc.), which
the theme files style; nothing here names a colour.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from vectra_tui import drawing
from vectra_tui.event_log import EventLog, compact_line
from vectra_tui.view import (
    FAMILIES,
    ChromeView,
    ConnectionView,
    GameView,
    LatencyView,
    LoggedEvent,
    OrderLine,
    PlayerView,
    RatesView,
    RecordingView,
    SubscribersView,
)

STATE_TONE = {
    "connected": "good",
    "ok": "good",
    "running": "good",
    "recording": "good",
    "connecting": "warn",
    "reconnecting": "warn",
    "degraded": "warn",
    "launching": "warn",
    "relaunching": "warn",
}


WAITING_PHASES = ("COOLDOWN", "PRESALE")


def tone(state: str | None) -> str:
    return STATE_TONE.get(state or "", "bad")


_NOTHING_YET = object()


class Panel(Widget):
    shows = ""  # the ConsoleSnapshot field this panel draws
    COMPONENT_CLASSES = {"panel--label", "panel--good", "panel--warn", "panel--bad", "panel--accent", "panel--dim"}

    def __init__(self, title: str, *, id: str) -> None:
        super().__init__(id=id, classes="panel")
        self.border_title = title
        self.view: Any = _NOTHING_YET

    def show(self, view: Any) -> None:
        if view != self.view:
            self.view = view
            self.refresh()

    def tint(self, name: str) -> Style:
        return self.get_component_rich_style(f"panel--{name}")

    def text(self, *parts: tuple[str, str | None] | str) -> Text:
        """One line from plain strings and (string, tone) pairs."""
        line = Text(no_wrap=True, overflow="ellipsis")
        for part in parts:
            if isinstance(part, str):
                line.append(part)
            else:
                words, name = part
                line.append(words, self.tint(name) if name else None)
        return line

    def render(self) -> Text:
        if self.view is _NOTHING_YET:
            return Text("…")
        lines = self.draw(self.view, self.content_size.width, self.content_size.height)
        joined = Text("\n").join(lines[: max(1, self.content_size.height)])
        joined.no_wrap, joined.overflow = True, "ellipsis"
        return joined

    def draw(self, view: Any, width: int, height: int) -> list[Text]:
        raise NotImplementedError


class ConnectionPanel(Panel):
    shows = "connection"

    def draw(self, view: ConnectionView, width: int, height: int) -> list[Text]:
        lines = []
        if view.unreachable:
            lines.append(self.text(("● ", "bad"), (view.unreachable, "bad")))
        state = view.state or "unknown"
        lines.append(
            self.text(("● ", tone(state)), (state, tone(state)), "  ", (view.status, tone(view.status)))
        )
        for source in view.sources:
            if source.state != "connected" and source.reason:
                lines.append(
                    self.text(
                        (f"{source.name} unreachable: {source.reason} (attempt {source.attempt}, retrying)", "warn")
                    )
                )
        lines.append(self.text(("url ", "label"), view.url or "—"))
        lines.append(
            self.text(
                ("up ", "label"),
                drawing.duration(view.uptime_s),
                ("  reconnects ", "label"),
                str(view.reconnects),
                ("  feed ", "label"),
                drawing.age(view.feed_age_ms),
            )
        )
        if len(view.sources) > 1 and height > len(lines):
            for source in view.sources:
                lines.append(self.text((f"{source.name:<9}", "label"), (source.state, tone(source.state))))
        return lines


class LatencyPanel(Panel):
    shows = "latency"

    def draw(self, view: LatencyView, width: int, height: int) -> list[Text]:
        """The feed round trip only where a source measures it; the pipeline's always."""
        lines = [] if view.feed_rtt_ms is None else [self.text(("feed RTT ", "label"), drawing.millis(view.feed_rtt_ms))]
        return [
            *lines,
            self.text(
                ("p50 ", "label"), drawing.millis(view.p50_ms), ("  p99 ", "label"), drawing.millis(view.p99_ms)
            ),
            self.text((drawing.sparkline(view.history, width), "accent")),
        ]


class RatesPanel(Panel):
    shows = "rates"

    def draw(self, view: RatesView, width: int, height: int) -> list[Text]:
        lines = []
        for family in FAMILIES:
            rate = view.per_s.get(family, 0.0)
            label = f"{family:<7}{rate:>7.1f}/s "
            name = "bad" if family == "errors" and rate > 0 else "accent"
            lines.append(
                self.text((label, "label"), (drawing.sparkline(view.history.get(family, ()), width - len(label)), name))
            )
        lines.append(
            self.text(("total ", "label"), drawing.count(view.events_total), ("  now ", "label"), f"{view.events_per_s:g}/s")
        )
        return lines


class GamePanel(Panel):
    shows = "game"

    def draw(self, view: GameView, width: int, height: int) -> list[Text]:
        if view.game_id is None:
            return [self.text(("no game seen yet", "dim"))]
        head = self.text(("game ", "label"), view.game_id, "  ", (view.phase or "?", "accent"))
        if view.phase in WAITING_PHASES:
            return [head, *self._before_start(view)]
        lines = [
            head,
            self.text(("tick ", "label"), str(view.tick if view.tick is not None else "—"), ("  price ", "label"), drawing.price(view.price)),
        ]
        results = "  ".join(
            f"{drawing.price(result.peak_price)}@{result.final_tick}" for result in view.recent_results
        )
        chart_rows = max(0, height - len(lines) - (1 if results else 0))
        lines.extend(self.text((row, "accent")) for row in drawing.block_chart(view.price_path, width, chart_rows))
        if results:
            lines.append(self.text(("last peaks ", "label"), results))
        return lines

    def _before_start(self, view: GameView) -> list[Text]:
        """No price moves before the start: the countdown and how the last games ended instead."""
        lines = [self.text(("starts in ", "label"), (drawing.countdown(view.cooldown_ms), "accent"))]
        if not view.recent_results:
            return [*lines, self.text(("no game ended yet", "dim"))]
        lines.append(self.text(("last games", "label")))
        for result in view.recent_results:
            lines.append(
                self.text(
                    (f"{drawing.price(result.peak_price):>8}", "accent"),
                    (" peak  rug ", "label"),
                    f"@{result.final_tick if result.final_tick is not None else '—'}".ljust(5),
                    ("  final ", "label"),
                    drawing.price(result.final_price),
                )
            )
        return lines


class ChromePanel(Panel):
    shows = "chrome"

    def draw(self, view: ChromeView | None, width: int, height: int) -> list[Text]:
        if view is None or view == ChromeView():
            return [self.text(("no browser: the feed is direct", "dim")), self.text(("(VECTRA_SOURCE=cdp uses one)", "dim"))]
        lines = [
            self.text(
                (view.state or "unknown", tone(view.state)),
                ("  pid ", "label"),
                str(view.pid or "—"),
                ("  cdp ", "label"),
                str(view.cdp_port or "—"),
            ),
            self.text(("user ", "label"), view.user or "not signed in"),
        ]
        if view.reason:
            lines.append(self.text((view.reason, "bad")))
        lines.append(self.text(("tab ", "label"), view.tab_url or "—"))
        lines.append(self.text(("profile ", "label"), view.profile or "—"))
        return lines


class RecordingPanel(Panel):
    shows = "recording"

    def draw(self, view: RecordingView, width: int, height: int) -> list[Text]:
        if not view.available:
            return [self.text(("recorder not available", "dim"))]
        if view.on:
            head = self.text(("● REC ", "bad"), (view.state or "on", "good"))
        else:
            head = self.text(("○ off", "dim"), ("  r starts", "dim"))
        lines = [head, self.text(("rows ", "label"), drawing.count(view.rows), ("  size ", "label"), drawing.size(view.bytes))]
        if view.reason:
            lines.append(self.text((view.reason, "bad")))
        lines.append(self.text(("file ", "label"), PurePath(view.path).name if view.path else "—"))
        return lines


class SubscribersPanel(Panel):
    shows = "subscribers"

    def draw(self, view: SubscribersView, width: int, height: int) -> list[Text]:
        return [
            self.text(("ws ", "label"), drawing.count(view.ws), ("  zmq ", "label"), drawing.count(view.zmq)),
            self.text(
                ("cut off ", "label"),
                (drawing.count(view.closed_slow), "bad" if view.closed_slow else None),
                (" slow ", "label"),
                (drawing.count(view.closed_flood), "bad" if view.closed_flood else None),
                (" flood", "label"),
            ),
        ]


ORDER_MARK = {"filled": ("✓", "good"), "rejected": ("✗", "bad"), "unsettled": ("?", "warn")}


class PlayerPanel(Panel):
    """The order desk and the player: the kill switch loudest of all, then the player's figures, the
    orders in flight and the last outcomes with their codes. Shown only where there is a desk."""

    shows = "player"

    def show(self, view: PlayerView) -> None:
        self.display = view.available
        self.set_class(view.halted, "-halted")
        super().show(view)

    def draw(self, view: PlayerView, width: int, height: int) -> list[Text]:
        if view.halted:
            head = self.text(("■ HALTED", "bad"), ("  every order refused; ", "bad"), ("u resumes", "label"))
        else:
            head = self.text(("orders ", "label"), (view.mode or "?", "good" if view.mode == "live" else "accent"),
                             ("  via ", "label"), view.executor or "—")
        lines = [head]
        if view.executor_problem and view.mode == "live":
            lines.append(self.text((view.executor_problem, "warn")))
        lines.extend(self._figures(view))
        for order in view.in_flight:
            lines.append(self.text(("→ ", "warn"), f"{order.kind} ", (order.state, "warn"), ("  " + order.order_id, "dim")))
        lines.extend(self._outcome(order) for order in view.recent)
        return lines

    def _figures(self, view: PlayerView) -> list[Text]:
        if view.cash is None and view.position_qty is None:
            return [self.text(("no player state yet", "dim"))]
        return [
            self.text((f"{view.username or 'player'} ", "accent"), ("cash ", "label"), drawing.sol(view.cash),
                      ("  pos ", "label"), drawing.sol(view.position_qty), ("  avg ", "label"), drawing.price(view.avg_cost)),
            self.text(("PnL ", "label"), (drawing.signed(view.cumulative_pnl), tone_of(view.cumulative_pnl)),
                      f" ({drawing.signed(view.pnl_percent, 1)}%)", ("  bet ", "label"), drawing.sol(view.sidebet),
                      ("  short ", "label"), drawing.sol(view.short)),
        ]

    def _outcome(self, order: OrderLine) -> Text:
        mark, name = ORDER_MARK[order.state]
        detail = order.code or "" if order.state == "rejected" else (drawing.price(order.price) if order.price is not None else "")
        why = f"  {order.message}" if order.state == "unsettled" and order.message else ""  # as far as the width allows
        return self.text((f"{mark} ", name), f"{order.kind} ", (order.state, name), f" {detail}",
                         ("  " + order.order_id, "dim"), ("  dry" if order.dry_run else "", "dim"), (why, "dim"))


def tone_of(amount: float | None) -> str | None:
    if not amount:
        return None
    return "good" if amount > 0 else "bad"


class LogPanel(Panel):
    """The latest events that pass the filter, newest at the bottom.

    The busiest panel, so it uses the line API: each event's line is formatted once per width and
    reused while it scrolls up, instead of the whole panel being laid out again at every refresh.
    """

    def __init__(self, events: EventLog, *, id: str) -> None:
        super().__init__("Events", id=id)
        self.events = events
        self._visible: list[LoggedEvent] | None = None
        self._strips: dict[tuple[int, int], Strip] = {}
        self._base = Style()

    def show_log(self) -> None:
        subtitle = f"{self.events.pattern}{'  PAUSED' if self.events.paused else ''}"
        if subtitle != self.border_subtitle:  # setting it repaints, even to the same text
            self.border_subtitle = subtitle
        if self.events.version != self.view:
            self._visible = None
        self.show(self.events.version)

    def on_resize(self) -> None:
        self._visible = None
        self.refresh()

    def notify_style_update(self) -> None:
        """A theme change: every cached line carries the old colours."""
        super().notify_style_update()
        self._visible = None
        self._strips = {}

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size
        if self._visible is None:
            self._base = self.rich_style  # costly to compute; the same for every line of a repaint
            self._visible = list(self.events.lines)[-height:] if height > 0 else []
            wanted = {(event.seq, width) for event in self._visible}
            self._strips = {key: strip for key, strip in self._strips.items() if key in wanted}
        base = self._base
        if not self._visible:
            if y == 0:
                note = f"no events matching {self.events.pattern} yet"
                return Strip([Segment(note, base + self.tint("dim"))]).crop_extend(0, width, base)
            return Strip.blank(width, base)
        if y >= len(self._visible):
            return Strip.blank(width, base)
        event = self._visible[y]
        strip = self._strips.get((event.seq, width))
        if strip is None:
            strip = Strip([Segment(compact_line(event, width), base)]).crop_extend(0, width, base)
            self._strips[(event.seq, width)] = strip
        return strip
