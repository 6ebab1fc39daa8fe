"""Orders through Vectra: the desk that checks, sends and follows them, and the executors that put
their frames on the wire."""
