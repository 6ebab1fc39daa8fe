"""Putting the desk into a foundation, with the executor the settings ask for.

Executors that are not built here yet (`page`, `click`) simply have no entry: the desk then refuses
live orders with `no_executor` and says which executor is missing.
"""

from __future__ import annotations

from typing import Any, Callable

from core.foundation import Foundation
from core.orders.desk import OrderDesk
from core.orders.executors.base import Executor
from core.orders.executors.direct import DirectExecutor


def _source(foundation: Foundation, name: str) -> Any:
    return next((source for source in foundation.sources if source.name == name), None)


EXECUTORS: dict[str, Callable[[Foundation], Executor]] = {
    "direct": lambda foundation: DirectExecutor(_source(foundation, "socketio")),
}


def install_orders(foundation: Foundation) -> OrderDesk:
    """Call after the sources are added: the executor sends through one of them."""
    make = EXECUTORS.get(foundation.settings.order_executor_name)
    desk = OrderDesk(foundation, make(foundation) if make is not None else None)
    foundation.add_component(desk)
    return desk
