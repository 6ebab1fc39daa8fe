"""How Vectra's stream looks on NATS JetStream: the names the bridge, the edge source and the client share.

One stream, `VECTRA`, holds every event under `vectra.<channel>`; each message is the envelope's JSON
exactly as the other transports send it. `seq` rides in two headers: `Nats-Msg-Id`, which JetStream
uses to drop a message it already holds (a republish after a reconnect), and `Vectra-Seq`, which a
reader uses to find a `seq` without parsing bodies. Both grow with the stream's own sequence, so a
`from_seq` maps to a stream position by bisection.
"""

from __future__ import annotations

STREAM = "VECTRA"
SUBJECT_PREFIX = "vectra."
SUBJECTS = SUBJECT_PREFIX + ">"
MSG_ID_HEADER = "Nats-Msg-Id"
SEQ_HEADER = "Vectra-Seq"


def subject_for(channel: str) -> str:
    return SUBJECT_PREFIX + channel


def channel_of(subject: str) -> str:
    if not subject.startswith(SUBJECT_PREFIX):
        raise ValueError(f"{subject!r} is not a Vectra subject (they start with {SUBJECT_PREFIX!r})")
    return subject[len(SUBJECT_PREFIX):]
