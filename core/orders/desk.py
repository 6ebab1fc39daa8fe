"""The order desk: every order from a bot passes here, is checked, sent at most once, and followed to
its outcome on the channels.

The desk is a component and a bus subscriber. Commands come in through the foundation (`order`,
`orders_halt`, `orders_resume`, `orders_status`, `player`); evidence comes in from the bus: acks
(`raw.ack`, by the ack id the desk chose), the player's own trades (`raw.standard/newTrade`, by the
trace id the order carried, else by player, type, amount and tick) and the player's state. What it
learns from the bus it publishes on the next turn of the loop, never from inside the bus's fan-out,
so every subscriber sees the evidence before the conclusion drawn from it.

An order id is reserved before the first `await`, so the same id arriving twice at once (two
connections, a retry) finds the first record and sends nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any

from core.contracts.component import CommandError
from core.contracts.envelope import Envelope, now_ms
from core.contracts.fields import as_float
from core.contracts.health import OrdersHealth
from core.contracts.orders import BadOrder, Order, RejectCode, order_fields, parse_order
from core.contracts.requests import Order as OrderCommand, OrdersHalt, OrdersResume, OrdersStatus, Player as PlayerRequest
from core.foundation import Foundation
from core.orders.after_restart import FIGURE_OF, Verdict, decide, player_before
from core.orders.executors.base import Executor, ExecutorError, OrderFrame
from core.orders.journal import OrderJournal
from core.orders.limits import DeskView, check
from core.orders.player import PlayerBook
from core.orders.shapes import SHAPES, build_frame, frame_from_text, trace_id_of

log = logging.getLogger(__name__)

FIRST_ACK_ID = 900_000_000  # far above any ack id a page's own client reaches
RECENT_SHOWN = 20
TRADE_TYPES = {"buy": "buy", "sell": "sell", "short_open": "short_open", "short_close": "short_close"}
AMOUNT_TOLERANCE = 1e-9
ORDER_ID_REUSED = "order_id_reused"  # the error reply to another order under an id already taken
UNCLAIMED_KEPT = 64
WATCHED = ("raw.ack", "raw.standard/newTrade", "player.update", "player.identity", "raw.gameStatePlayerUpdate")


@dataclass(slots=True)
class Pending:
    """An order sent and not yet settled."""

    order: Order
    frame: OrderFrame
    sent_monotonic: float
    tick: int | None
    fill: tuple[str, dict[str, Any] | None, Any, Any] | None = None  # matchedBy, trade, price, tick
    early_ack: tuple[Any, float] | None = None  # an ack (and when it came) before the executor returned
    timing: dict[str, float] = field(default_factory=dict)  # the order's moments so far (`timing` on the channels)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    sent_on_figure: int = 0  # orders this run sent on its figure, itself included, when it was sent
    by_account: bool = False  # acked, its trade given up on: the player's account may settle it now


class OrderDesk:
    name = "orders"

    def __init__(self, foundation: Foundation, executor: Executor | None) -> None:
        self.foundation = foundation
        self.settings = foundation.settings
        self.executor = executor
        self.player = PlayerBook()
        self.journal = OrderJournal(self.settings.data_dir / "orders")
        self.records: dict[str, dict[str, Any]] = {}
        self.halted = False
        self._pending: dict[str, Pending] = {}  # sent, waiting for the ack (or unknown after a timeout)
        self._acked: dict[str, Pending] = {}  # acked, waiting for the player's own trade
        self._by_ack: dict[int, str] = {}
        # acks and trades no order claimed: one may belong to a frame the page built (click) whose ack id
        # and trace the desk learns only when the executor returns, after the server already answered
        self._unclaimed: deque[tuple[str, Any, Any]] = deque(maxlen=UNCLAIMED_KEPT)
        self._accepted: deque[float] = deque()
        self._staked: dict[str | None, float] = {}
        self._ack_ids = itertools.count(FIRST_ACK_ID)
        self._tasks: set[asyncio.Task] = set()
        self._deciding: set[asyncio.Future] = set()  # orders past their checks, not yet sent or refused
        # unsettled when an earlier run stopped: the first playerUpdate (and game.tick) of this run settles them
        self._reloaded: dict[str, dict[str, Any]] = {}
        self._sent_on: Counter[str] = Counter()  # orders this run sent, by the figure each may have moved
        if foundation.bus.relaying:
            return  # an edge: orders go to the origin, whose player state and order events the stream carries
        for action, handler in (
            ("order", self._order),
            ("orders_halt", self._halt),
            ("orders_resume", self._resume),
            ("orders_status", self._status),
            ("player", self._player),
        ):
            foundation.add_command(action, handler)
        foundation.bus.subscribe(self)

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.records, self.halted = await asyncio.to_thread(self.journal.load)
        self._ack_ids = itertools.count(FIRST_ACK_ID + len(self.records))
        self._recount()
        for record in self.records.values():
            if record["state"] in ("requested", "sent"):
                # Sent by an earlier run whose outcome never arrived: unknown, and never sent again.
                record.update(state="timeout", message="Vectra stopped before the outcome was known")
                log.warning("order %s: outcome unknown (Vectra stopped while it was in flight)", record["order_id"])
            # Acked with success, its trade never matched: the server took it, and the account may show the fill.
            if record["state"] in ("timeout", "acked") and not record["dryRun"] and "whyUnknown" not in record:
                self._reloaded[record["order_id"]] = record
        if self.halted:
            log.warning("orders are halted (kill switch from an earlier run); `orders_resume` lifts it")

    async def stop(self) -> None:
        for pending in (*self._pending.values(), *self._acked.values()):
            for timer in pending.timers:
                timer.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.journal.close()

    def health(self) -> OrdersHealth:
        return OrdersHealth(**self._summary())

    # --- commands -------------------------------------------------------------------------------

    async def _order(self, request: OrderCommand) -> dict[str, Any]:
        received = wall_ms()
        try:
            order = parse_order(request.order_fields())
        except BadOrder as exc:
            raise CommandError(RejectCode.BAD_ORDER.value, str(exc)) from None
        known = self.records.get(order.order_id)
        if known is not None:
            return _reply(_same_order(known, order))
        record = self._new_record(order)
        self.records[order.order_id] = record  # reserved: a repeat from now on gets this record
        passed, refusal = check(order, self._view(order), self.settings)
        if refusal is not None:
            code, message = refusal
            envelope = self._reject(record, code, message, by="vectra")
            record["seq_of_request"] = envelope.seq
            await self._persist(record)
            return _reply(record)
        self._count(order)
        frame = build_frame(order, next(self._ack_ids))
        executor = self.executor.name if self.executor is not None else None
        requested = {"order": order_fields(order), "checks": passed, "executor": executor}
        record.update(seq_of_request=self.foundation.bus.next_seq, executor=executor, ackId=frame.ack_id,
                      traceId=frame.trace_id, frame=frame.text)
        if record["dryRun"]:
            self._publish("order.request", record, **requested)
            self._dry_run(record, frame)
            await self._persist(record)
            return _reply(record)
        pending = self._hold_slot(order, frame)  # before any await: the next order sees it in flight
        others = any(other != order.order_id for other in (*self._pending, *self._acked))
        record["playerBefore"] = player_before(self.player.state(), others)
        figure = FIGURE_OF[order.kind]
        self._sent_on[figure] += 1
        pending.sent_on_figure = self._sent_on[figure]
        # The checks passed: the record goes to the journal's worker now, and order.request (the seq
        # the record names) goes out while the worker writes. Nothing awaits in between.
        writing = self.journal.append(record)
        self._publish("order.request", record, **requested)
        pending.timing.update(received=received, checked=wall_ms())
        deciding = asyncio.get_running_loop().create_future()
        self._deciding.add(deciding)
        try:
            return _reply(await self._send_when_durable(record, pending, writing))
        finally:
            self._deciding.discard(deciding)
            deciding.set_result(None)

    async def _halt(self, request: OrdersHalt) -> dict[str, Any]:
        if not self.halted:
            log.warning("orders halted (%s)", request.reason)
        self.halted = True  # at once, before it is durable: an order between its checks and the wire stops too
        try:
            await asyncio.to_thread(self.journal.set_halted, True, request.reason)
            problem = None
        except OSError as exc:
            log.error("the halt could not be written to %s (%s): it holds until a restart only", self.journal.halt_path, exc)
            problem = exc
        if self._deciding:  # the reply is a barrier: after it, no order is left that could still go out
            await asyncio.wait(set(self._deciding), timeout=self.settings.order_ack_timeout_s)  # unless a send hangs
        if problem is not None:
            raise CommandError(RejectCode.NOT_DURABLE.value, f"orders are halted now, but the halt could not be written "
                               f"({problem}): a restart would lift it; halt again once there is room")
        return await self._status(request)

    async def _resume(self, request: OrdersResume) -> dict[str, Any]:
        await asyncio.to_thread(self.journal.set_halted, False, "")
        if self.halted:
            log.warning("orders resumed")
        self.halted = False
        return await self._status(request)

    async def _status(self, request: OrdersHalt | OrdersResume | OrdersStatus) -> dict[str, Any]:
        recent = sorted(self.records.values(), key=lambda record: record["created_ms"])[-RECENT_SHOWN:]
        in_flight = [self.records[order_id] for order_id in self._pending]
        return {"type": "orders", "data": {**self._summary(), "in_flight": in_flight, "recent": recent}}

    async def _player(self, request: PlayerRequest) -> dict[str, Any]:
        last = self.foundation.bus.last_by_type.get("player.state")
        return {"type": "player", "data": last.data if last is not None else None}

    def _summary(self) -> dict[str, Any]:
        return {
            "mode": self.settings.orders,
            "halted": self.halted,
            "executor": self.settings.order_executor_name,
            "executor_problem": self._executor_problem(),
            "in_flight_count": len(self._pending),
            "limits": {
                "max_sol": self.settings.order_max_sol,
                "max_sol_per_game": self.settings.order_max_sol_per_game,
                "max_per_minute": self.settings.order_max_per_minute,
                "max_tick_age_s": self.settings.order_max_tick_age_s,
                "max_in_flight": self.settings.order_max_in_flight,
            },
        }

    # --- checks ---------------------------------------------------------------------------------

    def _view(self, order: Order) -> DeskView:
        foundation = self.foundation
        tick = foundation.bus.last_by_type.get("game.tick")
        now = time.monotonic()
        while self._accepted and now - self._accepted[0] > 60:
            self._accepted.popleft()
        return DeskView(
            mode=self.settings.orders,
            halted=self.halted,
            phase=foundation.normalizer.phase,
            game_id=self._game_id(),
            tick_age_s=(now_ms() - tick.timestamp) / 1000 if tick is not None else None,
            position_qty=as_float(self.player.figures["positionQty"]),
            short_open=None if self.player.player_id is None else bool(self.player.figures["shortPosition"]),
            staked_this_game=self._staked.get(self._game_id(), 0.0),
            orders_last_minute=len(self._accepted),
            in_flight_of_kind=sum(1 for pending in self._pending.values() if pending.order.kind == order.kind),
            shape_status=SHAPES[order.kind].status,
            executor_problem=self._executor_problem(),
        )

    def _executor_problem(self) -> str | None:
        if self.executor is None:
            return f"no {self.settings.order_executor_name} executor is installed"
        return self.executor.available()

    def _count(self, order: Order) -> None:
        key = self._game_id()
        self._accepted.append(time.monotonic())
        self._staked[key] = self._staked.get(key, 0.0) + order.amount

    def _recount(self) -> None:
        """What earlier runs accepted counts too: a restart must not hand out a fresh minute of orders
        or a fresh SOL budget for the game it lands in. An order counted once passed its checks, which
        is when it got its ack id."""
        now_wall, now = now_ms(), time.monotonic()
        for record in sorted(self.records.values(), key=lambda record: record["created_ms"]):
            if "ackId" not in record:
                continue
            age_s = max(0.0, (now_wall - record["created_ms"]) / 1000)
            if age_s < 60:
                self._accepted.append(now - age_s)
            key = record.get("gameId")
            self._staked[key] = self._staked.get(key, 0.0) + (as_float(record["order"].get("amount_sol")) or 0.0)

    def _game_id(self) -> str | None:
        game = self.foundation.normalizer.game
        return game.game_id if game else None

    # --- sending --------------------------------------------------------------------------------

    def _dry_run(self, record: dict[str, Any], frame: OrderFrame) -> None:
        """The whole life, without the wire: the frame that would go out, then a fill at the last tick."""
        executor = self.executor.name if self.executor is not None else None
        self._publish("order.sent", record, **self._sent_fields(frame, record["kind"], sent=False, executor=executor))
        tick = self.foundation.bus.last_by_type.get("game.tick")
        self._settle_filled(record, "dry-run", None, price=tick.data.get("price") if tick else None,
                            tick=tick.data.get("tickCount") if tick else None)

    def _hold_slot(self, order: Order, frame: OrderFrame) -> Pending:
        tick = self.foundation.bus.last_by_type.get("game.tick")
        pending = Pending(order, frame, time.monotonic(), tick.data.get("tickCount") if tick else None)
        self._pending[order.order_id] = pending
        self._by_ack[frame.ack_id] = order.order_id
        return pending

    async def _send_when_durable(self, record: dict[str, Any], pending: Pending,
                                 writing: asyncio.Future[None]) -> dict[str, Any]:
        """The record (`writing`) is durable before the frame leaves, so a crash can never send it twice;
        an order whose record the disk refused, or that the kill switch caught meanwhile, is refused."""
        order_id = pending.order.order_id
        if not await self._written(record, writing):
            self._release(order_id)
            self._reject(record, RejectCode.NOT_DURABLE, f"not sent: its record could not be written to "
                         f"{self.journal.path} (see the log), and a crash could then send it twice", by="vectra")
            return record
        pending.timing["durable"] = wall_ms()
        if self.halted:
            self._release(order_id)
            self._reject(record, RejectCode.HALTED, "orders were halted after its checks passed; not sent", by="vectra")
            await self._persist(record)
            return record
        return await self._send(record, pending)

    async def _send(self, record: dict[str, Any], pending: Pending) -> dict[str, Any]:
        assert self.executor is not None  # the checks refuse live orders without one
        order, frame = pending.order, pending.frame
        pending.sent_monotonic = time.monotonic()
        try:
            sent = await self.executor.send(frame)
        except ExecutorError as exc:
            self._release(order.order_id)
            self._reject(record, RejectCode.NO_EXECUTOR, f"not sent: {exc}", by="vectra")
            await self._persist(record)
            return record
        if sent.frame != frame.text:  # the executor let the page build it (click): its ack id and trace rule
            frame = self._follow_sent(order.order_id, pending, sent.frame)
        record.update(state="sent", sent_at_ms=sent.sent_at_ms)
        pending.timing["sent"] = wall_ms()
        self._publish("order.sent", record, **self._sent_fields(frame, order.kind, sent=True, executor=sent.executor),
                      timing=dict(pending.timing))
        loop = asyncio.get_running_loop()
        pending.timers += [
            loop.call_later(self.settings.order_ack_timeout_s, self._ack_timeout, order.order_id),
            loop.call_later(self.settings.order_settle_timeout_s, self._settle_timeout, order.order_id),
        ]
        if pending.early_ack is not None:  # the ack beat the executor's own return (a slow CDP call)
            self._on_ack(frame.ack_id, *pending.early_ack)
        # Not journaled here: the record was durable before the frame left, and a restart reads a
        # `sent` order exactly as a `requested` one (unsettled: never sent again). Its next state (ack,
        # timeout) is journaled; a write now would only compete with the ack's arrival.
        return record

    def _follow_sent(self, order_id: str, pending: Pending, text: str) -> OrderFrame:
        """Follow the frame that went out instead of the one proposed. One not seen (empty text) leaves
        no ack id to wait for and no trace: its fill is matched by its fields, or the player's state
        settles it. Runs before the desk's next `await`, so no evidence of it is looked at before."""
        self._by_ack.pop(pending.frame.ack_id, None)
        seen = frame_from_text(text)
        if seen is not None:
            self._by_ack[seen.ack_id] = order_id
        pending.frame = seen or replace(pending.frame, trace_id=None, text=text)
        evidence = list(self._unclaimed)  # looked at again now that the frame is known
        self._unclaimed.clear()
        for kind, first, second in evidence:
            if kind == "ack":
                self._on_ack(first, second)
            else:
                self._on_trade(first, second)
        return pending.frame

    def _sent_fields(self, frame: OrderFrame, kind: str, *, sent: bool, executor: str | None) -> dict[str, Any]:
        return {"executor": executor, "frame": frame.text, "event": frame.event, "ackId": frame.ack_id if frame.text else None,
                "traceId": frame.trace_id, "sent": sent, "shape": SHAPES[kind].status}

    # --- evidence from the bus ------------------------------------------------------------------

    def deliver(self, envelope: Envelope) -> None:
        if envelope.type in WATCHED or (self._reloaded and envelope.type == "game.tick"):
            asyncio.get_running_loop().call_soon(self._learn, envelope)

    def _learn(self, envelope: Envelope) -> None:
        data = envelope.data
        if envelope.type == "raw.ack":
            self._on_ack(data.get("ackId"), data.get("args"))
        elif envelope.type == "raw.standard/newTrade":
            self._on_trade(data.get("payload"), data.get("trace"))
        elif envelope.type == "player.update":
            if self.player.player_update(data):
                self._publish_player(None)
            self._settle_unknown()
            self._settle_reloaded()
            for order_id in [key for key, pending in self._acked.items() if pending.by_account]:
                self._settle_by_account(order_id)
        elif envelope.type == "game.tick":
            self._settle_reloaded()
        elif envelope.type == "player.identity":
            if self.player.identity(data):
                self._publish_player(None)
        elif envelope.type == "raw.gameStatePlayerUpdate":
            state = self.player.leaderboard(data.get("payload"))
            if state is not None:
                self._publish_player(state)

    def _publish_player(self, state: dict[str, Any] | None) -> None:
        data = state if state is not None else {"gameId": self._game_id(), **self.player.state()}
        self.foundation.bus.publish("player.state", data, source=self.foundation.primary_source,
                                    game_id=data.get("gameId") if isinstance(data.get("gameId"), str) else None)

    def _on_ack(self, ack_id: Any, args: Any, arrived: float | None = None) -> None:
        arrived = wall_ms() if arrived is None else arrived
        order_id = self._by_ack.get(ack_id) if isinstance(ack_id, int) else None
        pending = self._pending.get(order_id) if order_id is not None else None
        if pending is None:
            self._unclaimed.append(("ack", ack_id, args))
            return
        record = self.records[order_id]
        if record["state"] == "requested":
            pending.early_ack = (args, arrived)  # taken up once order.sent is out, so the channels keep their order
            return
        args = args if isinstance(args, list) else [args]
        first = args[0] if args else None
        success = first.get("success") if isinstance(first, dict) and isinstance(first.get("success"), bool) else None
        latency = round((time.monotonic() - pending.sent_monotonic) * 1000, 3)
        self._publish("order.ack", record, ackId=ack_id, ack=args, success=success, latency_ms=latency,
                      timing={**pending.timing, "acked": arrived})
        if success is not True:
            reason = first.get("message") or first.get("reason") if isinstance(first, dict) else None
            self._release(order_id)
            self._reject(record, RejectCode.SERVER_REJECTED, str(reason or f"the server did not accept it: {args!r}"),
                         by="server")
        elif pending.fill is not None:
            self._release(order_id)
            self._settle_filled(record, *pending.fill)
        elif pending.order.kind == "sidebet":
            self._release(order_id)
            sidebet = first.get("sidebet") if isinstance(first, dict) else None
            self._settle_filled(record, "sidebet", sidebet if isinstance(sidebet, dict) else None,
                                price=None, tick=pending.tick)
        else:
            record["state"] = "acked"
            self._release(order_id, keep_for_fill=True)
            pending.timers.append(asyncio.get_running_loop().call_later(
                self.settings.order_ack_timeout_s, self._settle_by_account, order_id))
        self._spawn(self._persist(record))

    def _on_trade(self, trade: Any, trace: Any) -> None:
        if not isinstance(trade, dict):
            return
        trace_id = trace_id_of(trace)
        for order_id, pending in list(self._awaiting_fill().items()):
            if not self._is_our_trade(pending, trade, trace_id):
                continue
            fill = ("trace" if trace_id is not None else "fields", trade, as_float(trade.get("price")),
                    trade.get("tickIndex"))
            record = self.records[order_id]
            if record["state"] in ("requested", "sent"):
                pending.fill = fill  # the real server trades before it acks
            else:
                self._release(order_id)
                self._settle_filled(record, *fill)
                self._spawn(self._persist(record))
            return
        self._unclaimed.append(("trade", trade, trace))

    def _awaiting_fill(self) -> dict[str, Pending]:
        return {order_id: pending for order_id, pending in {**self._pending, **self._acked}.items()
                if pending.fill is None and pending.order.kind in TRADE_TYPES}

    def _is_our_trade(self, pending: Pending, trade: dict[str, Any], trace_id: str | None) -> bool:
        if trace_id is not None and pending.frame.trace_id is not None:
            return trace_id == pending.frame.trace_id
        if trade.get("type") != TRADE_TYPES[pending.order.kind]:
            return False
        if self.player.player_id is None or trade.get("playerId") != self.player.player_id:
            return False
        tick = trade.get("tickIndex")
        if pending.tick is not None and isinstance(tick, int) and tick < pending.tick:
            return False
        amount = as_float(trade.get("amount"))
        return not pending.order.amount or (amount is not None and abs(amount - pending.order.amount) < AMOUNT_TOLERANCE)

    # --- timeouts -------------------------------------------------------------------------------

    def _ack_timeout(self, order_id: str) -> None:
        pending = self._pending.get(order_id)
        record = self.records.get(order_id)
        if pending is None or record is None or record["state"] != "sent":
            return
        record["state"] = "timeout"
        waited = round((time.monotonic() - pending.sent_monotonic) * 1000, 3)
        self._publish("order.timeout", record, ackId=pending.frame.ack_id, waited_ms=waited)
        if pending.fill is not None:
            self._release(order_id)
            self._settle_filled(record, *pending.fill)
        self._spawn(self._persist(record))

    def _settle_unknown(self) -> None:
        """A `playerUpdate` after a timeout settles the order: traded (filled) or not (rejected)."""
        for order_id, pending in list(self._pending.items()):
            record = self.records[order_id]
            if record["state"] != "timeout":
                continue
            self._release(order_id)
            if pending.fill is not None:
                self._settle_filled(record, *pending.fill)
            elif pending.order.kind == "sidebet" and self.player.figures["sidebet"]:
                self._settle_filled(record, "sidebet", self.player.figures["sidebet"], price=None, tick=pending.tick)
            else:
                self._reject(record, RejectCode.SERVER_REJECTED,
                             "no ack, and the next playerUpdate shows no trade of this order", by="server")
            self._spawn(self._persist(record))

    def _settle_reloaded(self) -> None:
        """Orders an earlier run left unsettled, once this run has both the player's account and the game
        it is in: filled or rejected where the account shows it, else an `order.timeout` saying why the
        outcome stays unknown. An acked one was never a timeout: it stays `acked` and `order.unsettled`
        says why (`decide` never rejects it). Nothing is ever sent again."""
        tick = self.foundation.bus.last_by_type.get("game.tick")
        if not self._reloaded or not self.player.updated or tick is None or tick.data.get("phase") == "UNKNOWN":
            return
        figures = [FIGURE_OF[record["kind"]] for record in self._reloaded.values()]
        for order_id, record in list(self._reloaded.items()):
            del self._reloaded[order_id]
            figure = FIGURE_OF[record["kind"]]
            verdict = decide(record, self.player.state(), tick.gameId, tick.data.get("phase"))
            if verdict.outcome != "unknown" and self._sent_on[figure]:
                verdict = replace(verdict, outcome="unknown", why=f"an order of this run moved {figure} before the account was seen")
            elif verdict.outcome != "unknown" and figures.count(figure) > 1:
                verdict = replace(verdict, outcome="unknown", why=f"several orders on {figure} were unsettled when Vectra stopped")
            log.warning("order %s of an earlier run: %s (%s)", order_id, verdict.outcome, verdict.why)
            if verdict.outcome == "filled":
                sidebet = record["kind"] == "sidebet"
                trade = self.player.figures["sidebet"] if sidebet else None
                self._settle_filled(record, "sidebet" if sidebet else "position", trade)
            elif verdict.outcome == "rejected":
                self._reject(record, RejectCode.SERVER_REJECTED, verdict.why, by="server")
            else:
                self._stays_unknown(record, verdict.why, record["ackId"])
            self._spawn(self._persist(record))

    def _settle_by_account(self, order_id: str, *, last: bool = False) -> None:
        """An order the server acked with success whose own trade never came, settled by the player's
        account as an order an earlier run left `acked` is (`decide`, against its `playerBefore`): its
        figure moved its way, `order.filled` (`matchedBy: position`); else, once `last` (the settle
        timeout), it stays `acked` and `order.unsettled` says why.

        Not while its trade can still come: a fill by position has no price and no tick, and the trade
        arriving after it would then match nothing. The real server sends the trade before the ack
        (captured: trade, playerUpdate, gameStatePlayerUpdate, ack, within 150 ms), yet the trade is a
        broadcast and the ack a reply, so their order is not promised; a playerUpdate may also come
        before the trade. So the account is first asked `VECTRA_ORDER_ACK_TIMEOUT_S` after the ack: a
        trade that much later than its ack is as lost as an ack that much later than its frame. From then
        on each playerUpdate asks again (its own playerUpdate may be late too) until the settle timeout
        gives the last answer. Waiting for that timeout alone would make the bot wait longest, and a rug
        meanwhile would leave a fill the account showed unprovable."""
        pending = self._acked.get(order_id)
        if pending is None:
            return
        record = self.records[order_id]
        verdict = self._account_verdict(record, pending)
        if verdict.outcome != "filled" and not last:
            pending.by_account = True
            return
        log.warning("order %s acked without its trade: %s (%s)", order_id, verdict.outcome, verdict.why)
        self._release(order_id)
        if verdict.outcome == "filled":
            self._settle_filled(record, "position", None)
        else:
            self._stays_unknown(record, verdict.why, pending.frame.ack_id)
        self._spawn(self._persist(record))

    def _account_verdict(self, record: dict[str, Any], pending: Pending) -> Verdict:
        """What the account shows for an order of this run. One sent after it on the same figure may
        have moved it just as well (one sent before, still unsettled, already left no `playerBefore`)."""
        figure = FIGURE_OF[record["kind"]]
        if self._sent_on[figure] > pending.sent_on_figure:
            return Verdict("unknown", f"another order on {figure} was sent while this one waited for its trade: "
                                      "the account cannot tell them apart")
        tick = self.foundation.bus.last_by_type.get("game.tick")
        return decide(record, self.player.state(), tick.gameId if tick else None,
                      tick.data.get("phase") if tick else "UNKNOWN")

    def _stays_unknown(self, record: dict[str, Any], why: str, ack_id: Any) -> None:
        """The account cannot settle it: `whyUnknown` (journaled, so a restart does not ask again) and
        the event that says why. One the server acked with success stays `acked`, with
        `order.unsettled`: it took the order, so it is neither refused nor a timeout."""
        record["whyUnknown"] = why
        if record["state"] == "acked":
            self._publish("order.unsettled", record, ackId=ack_id, reason=why)
        else:
            waited = float(now_ms() - record.get("sent_at_ms", record["created_ms"]))
            self._publish("order.timeout", record, ackId=ack_id, waited_ms=waited, reason=why)

    def _settle_timeout(self, order_id: str) -> None:
        """Still unsettled long after sending: it stops holding its kind's in-flight slot; one acked
        without its trade gets the account's last answer."""
        if order_id in self._acked:
            self._settle_by_account(order_id, last=True)
        elif order_id in self._pending:
            log.warning("order %s still unsettled after %g s; no longer counted in flight", order_id,
                        self.settings.order_settle_timeout_s)
            self._release(order_id)

    # --- the record and the channels ------------------------------------------------------------

    def _release(self, order_id: str, *, keep_for_fill: bool = False) -> None:
        pending = self._pending.pop(order_id, None) or self._acked.pop(order_id, None)
        if pending is None:
            return
        if keep_for_fill:
            self._acked[order_id] = pending
            return
        self._by_ack.pop(pending.frame.ack_id, None)
        for timer in pending.timers:
            timer.cancel()

    def _new_record(self, order: Order) -> dict[str, Any]:
        return {
            "order_id": order.order_id,
            "kind": order.kind,
            "state": "requested",
            "dryRun": self.settings.orders != "live",
            "order": order_fields(order),
            "seq_of_request": None,
            "created_ms": now_ms(),
            "gameId": self._game_id(),
        }

    def _reject(self, record: dict[str, Any], code: RejectCode, message: str, *, by: str) -> Envelope:
        record.update(state="rejected", code=code.value, message=message, by=by)
        return self._publish("order.rejected", record, code=code.value, message=message, by=by)

    def _settle_filled(self, record: dict[str, Any], how: str, trade: dict[str, Any] | None, price: Any = None,
                       tick: Any = None) -> None:
        record.update(state="filled", price=price, tickIndex=tick)
        self._publish("order.filled", record, matchedBy=how, trade=trade, price=price, tickIndex=tick)

    def _publish(self, channel: str, record: dict[str, Any], **fields: Any) -> Envelope:
        data = {"order_id": record["order_id"], "kind": record["kind"], "dryRun": record["dryRun"], **fields}
        return self.foundation.bus.publish(channel, data, source=self.foundation.primary_source,
                                           game_id=self._game_id())

    async def _persist(self, record: dict[str, Any]) -> bool:
        """Journal the record as it stands; False (logged) when the disk refused it. Only an order about
        to be sent must then stop; any later state is already held in memory and in the reply."""
        return await self._written(record, self.journal.append(record))

    async def _written(self, record: dict[str, Any], writing: asyncio.Future[None]) -> bool:
        """Wait for the record's journal write, handed over already; False (logged) when it failed."""
        try:
            await writing
        except OSError as exc:
            log.error("order %s: its record could not be journaled (%s)", record["order_id"], exc)
            return False
        return True

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def wall_ms() -> float:
    """Now on the wall clock, in ms with µs: the moments in `timing`, comparable across processes."""
    return round(time.time() * 1000, 3)


def _same_order(record: dict[str, Any], order: Order) -> dict[str, Any]:
    """The record of an id asked for again: a retry gets it; another order under that id is refused,
    since answering it with the first order's result would tell the bot its new order was placed."""
    if record["order"] != order_fields(order):
        raise CommandError(ORDER_ID_REUSED, f"order_id {order.order_id!r} is already the order {record['order']}; "
                           "a new order needs a new id")
    return record


def _reply(record: dict[str, Any]) -> dict[str, Any]:
    return {"type": "order", "data": record}
