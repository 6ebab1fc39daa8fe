"""Recording every event to crash-safe Parquet files, and reading them back (see docs/RECORDING.md)."""

from __future__ import annotations

from core.foundation import Foundation
from core.recorder.recorder import Recorder


def install_recorder(foundation: Foundation) -> Recorder:
    """Plug the recorder into the foundation: component, subscriber, and history for resume."""
    recorder = Recorder(foundation)
    foundation.add_component(recorder)
    foundation.bus.subscribe(recorder)
    foundation.history = recorder.history
    return recorder
