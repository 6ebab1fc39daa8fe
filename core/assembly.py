"""The one place that decides what a foundation is made of, for a given configuration.

Two small registries: `SOURCES` says which source names exist and how each is plugged in (keyed by
the contract's `SourceName`, so `VECTRA_SOURCE`, `sys.start` and this table name the same sources),
`COMPONENTS` which components every foundation gets, in start order. The console and the daemon both
call `build_foundation`, so they cannot drift apart; a new source, sink or transport is one function
and one line here.
"""

from __future__ import annotations

from typing import Callable

from core.broadcast.http_ws import HttpWsServer
from core.broadcast.nats_bridge import NatsBridge
from core.broadcast.zmq_transport import ZmqTransport
from core.chrome.manager import ChromeManager, chrome_command
from core.config import Settings
from core.contracts.channels import SourceName
from core.contracts.component import Component
from core.contracts.feed import FeedSource
from core.foundation import Foundation
from core.orders.desk import OrderDesk
from core.orders.executors.base import Executor
from core.orders.executors.click import ClickExecutor
from core.orders.executors.direct import DirectExecutor
from core.orders.executors.page import PageExecutor
from core.recorder.recorder import Recorder
from core.sources.cdp_source import CdpSource
from core.sources.nats_source import NatsSource
from core.sources.replay_source import ReplaySource
from core.sources.socketio_source import SocketIOSource


def add_socketio_source(foundation: Foundation) -> FeedSource:
    source = SocketIOSource(foundation, foundation.settings)
    foundation.add_source(source)
    return source


def add_cdp_source(foundation: Foundation) -> FeedSource:
    """The CDP source with its Chrome manager: a component, a bus subscriber (identity) and the `chrome` command."""
    manager = ChromeManager(foundation.settings, foundation.bus)
    foundation.add_component(manager)
    foundation.bus.subscribe(manager)
    foundation.add_command("chrome", chrome_command(manager))
    source = CdpSource(foundation, foundation.settings, manager)
    foundation.add_source(source)
    return source


def add_replay_source(foundation: Foundation) -> FeedSource:
    source = ReplaySource(foundation, foundation.settings)
    foundation.add_source(source)
    return source


def add_nats_source(foundation: Foundation) -> FeedSource:
    """An edge: the bus relays the origin's numbered events, so this comes before any component."""
    foundation.bus.relay()
    source = NatsSource(foundation, foundation.settings, foundation.bus)
    foundation.add_source(source)
    return source


def install_recorder(foundation: Foundation) -> Recorder:
    """The recorder: a component, a subscriber that never drops, and the history replays read from."""
    recorder = Recorder(foundation)
    foundation.add_component(recorder)
    foundation.bus.keep_with(recorder)
    foundation.history = recorder.history
    return recorder


# How each order executor is built; one that is not built here has no entry, and the desk then refuses
# live orders with `no_executor`, naming the executor that is missing.
EXECUTORS: dict[str, Callable[[Foundation], Executor]] = {
    "direct": lambda foundation: DirectExecutor(_source(foundation, "socketio")),
    "page": lambda foundation: _in_the_browser(foundation, PageExecutor(foundation.settings)),
    "click": lambda foundation: _in_the_browser(foundation, ClickExecutor(foundation.settings)),
}


def _in_the_browser(foundation: Foundation, executor: PageExecutor | ClickExecutor) -> Executor:
    """`page` and `click` act in the managed browser's game tab: they watch it (a component) unless
    orders are off, which leaves the page alone (no script, no reload); `click` reads its frames back."""
    if isinstance(executor, ClickExecutor):
        foundation.bus.subscribe(executor)
    if foundation.settings.orders != "off":
        foundation.add_component(executor)
    return executor


def _source(foundation: Foundation, name: str) -> FeedSource | None:
    return next((source for source in foundation.sources if source.name == name), None)


def install_orders(foundation: Foundation) -> OrderDesk:
    """The order desk with the executor the settings ask for; the executor sends through a source,
    so this runs after the sources are added."""
    make = EXECUTORS.get(foundation.settings.order_executor_name)
    desk = OrderDesk(foundation, make(foundation) if make is not None else None)
    foundation.add_component(desk)
    return desk


def install_zmq(foundation: Foundation) -> Component:
    transport = ZmqTransport(foundation)
    foundation.add_component(transport)
    return transport


def install_http(foundation: Foundation) -> Component:
    server = HttpWsServer(foundation)
    foundation.add_component(server)
    return server


def install_nats(foundation: Foundation) -> Component | None:
    """The JetStream bridge, only where `VECTRA_NATS_URL` names a server."""
    if not foundation.settings.nats_url:
        return None
    bridge = NatsBridge(foundation)
    foundation.add_component(bridge)
    return bridge


SOURCES: dict[SourceName, Callable[[Foundation], FeedSource]] = {
    "socketio": add_socketio_source,
    "cdp": add_cdp_source,
    "replay": add_replay_source,
    "nats": add_nats_source,
}
# The recorder starts before the transports, so it holds everything a client could be sent.
COMPONENTS: tuple[Callable[[Foundation], Component | None], ...] = (
    install_recorder, install_orders, install_zmq, install_http, install_nats,
)


def build_foundation(settings: Settings) -> Foundation:
    foundation = Foundation(settings)
    for name in settings.sources:
        SOURCES[name](foundation)
    for install in COMPONENTS:
        install(foundation)
    return foundation
