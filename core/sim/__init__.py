"""A faithful, deterministic rugs.fun Socket.IO feed simulator for tests, demos and benchmarks."""

from core.sim.server import SimOptions, Simulator, run_simulator
from core.sim.world import World

__all__ = ["SimOptions", "Simulator", "World", "run_simulator"]
