"""A faithful, deterministic rugs.fun Socket.IO feed simulator for tests, demos and benchmarks."""
