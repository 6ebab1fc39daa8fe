"""The normalizer on frames captured from the real feed, and on the untidy orders the real feed has."""

from __future__ import annotations

import copy

import orjson
import pytest

from tests.protocol_models import EnvelopeModel, model_for
from core.contracts.envelope import Envelope
from core.contracts.feed import FeedEvent
from core.normalizer import Normalizer, derive_phase

GAME = "20260206-003482fbeaae4ad5"
LIVE_ORDER = [
    "02_cooldown_early_full",
    "01_cooldown_early_minimal",
    "03_presale_transition",
    "04_game_start_tick0",
    "09_trade_short_open",
    "07_trade_sell",
    "06_trade_buy",
    "08_trade_short_close",
    "05_active_midgame",
    "10_rug_event",
    "11_postrug_final",
]


def feed(normalizer: Normalizer, frame: dict) -> list:
    return normalizer.normalize(FeedEvent(frame["event_type"], frame["data"]), frame["timestamp_ms"])


def types(drafts) -> list[str]:
    return [draft.type for draft in drafts]


def game_events(drafts) -> list:
    return [d for d in drafts if d.type.startswith("game.")]


@pytest.mark.parametrize(
    "name, phase",
    [
        ("01_cooldown_early_minimal", "COOLDOWN"),
        ("02_cooldown_early_full", "COOLDOWN"),
        ("03_presale_transition", "PRESALE"),
        ("04_game_start_tick0", "ACTIVE"),
        ("05_active_midgame", "ACTIVE"),
        ("10_rug_event", "RUGGED"),
        ("11_postrug_final", "RUGGED"),
    ],
)
def test_phase_of_every_real_frame(key_samples, name, phase):
    assert derive_phase(key_samples[name]["data"]) == phase


def test_every_real_frame_gives_valid_documented_channels(key_samples):
    normalizer = Normalizer()
    seq = 0
    for name in LIVE_ORDER:
        for draft in feed(normalizer, key_samples[name]):
            seq += 1
            envelope = Envelope(seq, draft.type, 1, draft.gameId, "socketio", draft.data)
            EnvelopeModel.model_validate(envelope.as_dict())
            model = model_for(draft.type)
            assert model is not None, f"{draft.type} has no documented model"
            model.model_validate(draft.data)


def test_raw_event_keeps_payload_and_moves_trace(key_samples):
    frame = key_samples["06_trade_buy"]
    trace = {"__trace": True, "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    drafts = Normalizer().normalize(FeedEvent("standard/newTrade", frame["data"], trace=trace), 1)
    raw = drafts[0]
    assert raw.type == "raw.standard/newTrade"
    assert raw.data["payload"] == frame["data"]
    assert raw.data["trace"] == trace
    assert raw.gameId == GAME


def test_minimal_cooldown_frame_reports_missing_fields_as_null(key_samples):
    normalizer = Normalizer()
    feed(normalizer, key_samples["02_cooldown_early_full"])
    tick = next(d for d in feed(normalizer, key_samples["01_cooldown_early_minimal"]) if d.type == "game.tick")
    assert tick.data["cooldownTimer"] == 14900
    assert tick.data["phase"] == "COOLDOWN"
    for missing in ("active", "rugged", "price", "tickCount", "tradeCount"):
        assert tick.data[missing] is None, missing
    assert tick.data["connectedPlayers"] == 172


def test_a_whole_real_game_in_live_order(key_samples):
    normalizer = Normalizer()
    everything = [d for name in LIVE_ORDER for d in feed(normalizer, key_samples[name])]
    phases = [(d.data["from"], d.data["to"]) for d in everything if d.type == "game.phase"]
    assert phases == [(None, "COOLDOWN"), ("COOLDOWN", "PRESALE"), ("PRESALE", "ACTIVE"), ("ACTIVE", "RUGGED")]
    starts = [d for d in everything if d.type == "game.start"]
    assert [(s.gameId, s.data["tick"], s.data["late"]) for s in starts] == [(GAME, 0, False)]
    (end,) = [d for d in everything if d.type == "game.end"]
    assert end.data["finalTick"] == 255
    assert end.data["finalPrice"] == pytest.approx(0.0017842710071060424)
    assert end.data["ticksExpected"] == 256
    assert end.data["inferred"] is False
    peak = max(d.data["price"] for d in everything if d.type == "game.tick" and d.data["price"] is not None)
    assert end.data["peakPrice"] == peak
    trades = [d.data for d in everything if d.type == "player.trade"]
    assert sorted(t["type"] for t in trades) == ["buy", "sell", "short_close", "short_open"]
    buy = next(t for t in trades if t["type"] == "buy")
    assert buy["leverage"] == 4 and buy["username"] == "Aussiegambler" and buy["tickIndex"] == 37
    assert next(t for t in trades if t["type"] == "sell")["leverage"] is None


def test_missed_ticks_are_backfilled_from_partial_prices_or_declared(key_samples):
    normalizer = Normalizer()
    for name in LIVE_ORDER[:4]:
        feed(normalizer, key_samples[name])
    drafts = game_events(feed(normalizer, key_samples["05_active_midgame"]))
    window = key_samples["05_active_midgame"]["data"]["partialPrices"]["values"]
    assert drafts[0].type == "game.gap"
    assert (drafts[0].data["fromTick"], drafts[0].data["toTick"]) == (1, 98)
    backfilled = [d.data for d in drafts if d.type == "game.tick" and d.data["backfilled"]]
    assert [b["tickCount"] for b in backfilled] == [99, 100, 101, 102]
    assert [b["price"] for b in backfilled] == [window[str(t)] for t in range(99, 103)]
    live = drafts[-1]
    assert live.type == "game.tick" and live.data["tickCount"] == 103 and not live.data["backfilled"]


def test_genesis_after_later_cooldown_frames_and_duplicates_do_not_go_backwards(key_samples):
    normalizer = Normalizer()
    minimal = key_samples["01_cooldown_early_minimal"]
    later = copy.deepcopy(minimal)
    later["data"]["cooldownTimer"] = 14800
    out = feed(normalizer, minimal) + feed(normalizer, later)
    out += feed(normalizer, key_samples["02_cooldown_early_full"])  # genesis, late
    out += feed(normalizer, later)  # duplicate
    ticks = [d.data["cooldownTimer"] for d in out if d.type == "game.tick"]
    assert ticks == [14900, 14800]
    assert types(out).count("raw.gameStateUpdate") == 4, "nothing the feed sent is dropped"


def test_out_of_order_tick_is_backfilled_once_and_the_late_one_is_not_republished(key_samples):
    normalizer = Normalizer()
    for name in LIVE_ORDER[:4]:
        feed(normalizer, key_samples[name])
    mid = key_samples["05_active_midgame"]
    feed(normalizer, mid)
    ahead = copy.deepcopy(mid)
    ahead["data"]["tickCount"] = 105
    ahead["data"]["partialPrices"] = {"startTick": 101, "endTick": 105, "values": {str(t): 0.5 + t / 1000 for t in range(101, 106)}}
    late = copy.deepcopy(mid)
    late["data"]["tickCount"] = 104
    first = game_events(feed(normalizer, ahead))
    assert [(d.data["tickCount"], d.data["backfilled"]) for d in first] == [(104, True), (105, False)]
    assert game_events(feed(normalizer, late)) == []


def test_duplicated_rug_and_trade_give_one_end_and_one_trade(key_samples):
    normalizer = Normalizer()
    out = [d for name in LIVE_ORDER for d in feed(normalizer, key_samples[name])]
    out += feed(normalizer, key_samples["10_rug_event"]) + feed(normalizer, key_samples["06_trade_buy"])
    assert types(out).count("game.end") == 1
    assert types(out).count("game.start") == 1
    assert types(out).count("player.trade") == 4


def test_a_post_rug_frame_that_skips_a_tick_number_raises_no_false_gap(key_samples):
    """The real feed can send the rug at tick 266 and the post-rug history frame at 268: the ticks
    between are not missed (the game was over), so nothing `game.*` but the post-rug tick follows
    the game's `game.end`."""
    normalizer = Normalizer()
    out = [d for name in LIVE_ORDER[:-1] for d in feed(normalizer, key_samples[name])]
    assert types(game_events(out))[-1] == "game.end"
    rug_tick = key_samples["10_rug_event"]["data"]["tickCount"]
    post_rug = copy.deepcopy(key_samples["11_postrug_final"])
    post_rug["data"]["tickCount"] = rug_tick + 2
    after_end = game_events(feed(normalizer, post_rug))
    assert [(d.type, d.data.get("tickCount"), d.data.get("backfilled")) for d in after_end] == [
        ("game.tick", rug_tick + 2, False)
    ]


def test_joining_mid_game_is_a_late_start_without_gap(key_samples):
    normalizer = Normalizer()
    out = game_events(feed(normalizer, key_samples["05_active_midgame"]))
    assert types(out) == ["game.phase", "game.start", "game.tick"]
    assert out[1].data == {"tick": 103, "price": pytest.approx(0.45273518739708896), "late": True}
    end = next(d for d in feed(normalizer, key_samples["10_rug_event"]) if d.type == "game.end")
    assert end.data["ticksExpected"] == 255 - 103 + 1


def _genesis_of_next_game(key_samples, history_entry: dict) -> dict:
    genesis = copy.deepcopy(key_samples["02_cooldown_early_full"])
    genesis["data"]["gameId"] = "20260206-ffffffffffffffff"
    genesis["data"]["gameHistory"] = [history_entry | {"id": GAME}]
    return genesis


def _missed_rug_end(key_samples, history_entry: dict):
    normalizer = Normalizer()
    for name in LIVE_ORDER[:4]:
        feed(normalizer, key_samples[name])
    out = feed(normalizer, _genesis_of_next_game(key_samples, history_entry))
    assert [d.data["to"] for d in out if d.type == "game.phase"] == ["COOLDOWN"]
    (end,) = [d for d in out if d.type == "game.end"]
    assert end.gameId == GAME and end.data["inferred"] is True
    return end


def test_missed_rug_is_closed_from_the_real_history_entry(key_samples):
    entry = key_samples["11_postrug_final"]["data"]["gameHistory"][0]
    end = _missed_rug_end(key_samples, entry)
    assert end.data["peakPrice"] == entry["peakMultiplier"]


def test_missed_rug_is_closed_from_a_history_entry_with_prices(key_samples):
    entry = key_samples["11_postrug_final"]["data"]["gameHistory"][0] | {"prices": [1.0, 1.2, 3.5, 0.002]}
    end = _missed_rug_end(key_samples, entry)
    assert (end.data["finalTick"], end.data["peakPrice"], end.data["finalPrice"]) == (3, 3.5, 0.002)


def test_ticks_missed_before_an_unseen_rug_are_backfilled_from_the_history_prices(key_samples):
    normalizer = Normalizer()
    for name in LIVE_ORDER[:4]:
        feed(normalizer, key_samples[name])  # the game starts: tick 0 seen
    prices = [1.0, 1.1, 1.3, 1.25, 0.003]
    entry = key_samples["11_postrug_final"]["data"]["gameHistory"][0] | {"prices": prices}
    out = feed(normalizer, _genesis_of_next_game(key_samples, entry))
    old_game = [d for d in out if d.gameId == GAME]
    assert [(d.type, d.data.get("tickCount"), d.data.get("backfilled")) for d in old_game] == [
        ("game.tick", 1, True), ("game.tick", 2, True), ("game.tick", 3, True), ("game.tick", 4, True),
        ("game.end", None, None),
    ]
    assert [d.data["price"] for d in old_game[:4]] == prices[1:]
    end = old_game[-1].data
    assert (end["finalTick"], end["ticksSeen"], end["ticksExpected"], end["inferred"]) == (4, 5, 5, True)


@pytest.mark.parametrize(
    "name, payload",
    [
        ("gameStateUpdate", [1, 2, 3]),
        ("gameStateUpdate", {"cooldownTimer": 100}),
        ("standard/newTrade", "not an object"),
    ],
)
def test_unusable_payloads_give_an_error_event_and_keep_the_raw(name, payload):
    out = Normalizer().normalize(FeedEvent(name, payload), 1)
    assert out[0].type == f"raw.{name}" and out[0].data["payload"] == payload
    assert out[-1].type == "error" and out[-1].data["code"] == "bad_payload"


def test_passthrough_events_keep_their_payload(discovered_schemas):
    normalizer = Normalizer()
    update = {"id": "did:privy:x", "cash": 0.0176, "gameId": GAME}
    assert "playerUpdate" in discovered_schemas
    out = normalizer.normalize(FeedEvent("playerUpdate", update), 1)
    assert [(d.type, d.data) for d in out[1:]] == [("player.update", update)]
    identity = normalizer.normalize(FeedEvent("usernameStatus", {"username": "bot"}), 1)
    assert identity[1].type == "player.identity"


def resumed(normalizer: Normalizer) -> Normalizer:
    """What a restarted Vectra holds: the memory, through the JSON it is stored as."""
    memory = normalizer.changed_memory()
    assert memory is not None
    return Normalizer.resumed(orjson.loads(orjson.dumps(memory)))


def test_a_normalizer_resumed_from_its_memory_carries_on_the_same_game(key_samples):
    """The same real game with a restart after the midgame tick gives exactly the channels of a run without one."""
    normalizer = Normalizer()
    before = [d for name in LIVE_ORDER[:9] for d in feed(normalizer, key_samples[name])]
    normalizer = resumed(normalizer)
    after = [d for name in LIVE_ORDER[9:] for d in feed(normalizer, key_samples[name])]
    uninterrupted = Normalizer()
    expected = [d for name in LIVE_ORDER for d in feed(uninterrupted, key_samples[name])]
    assert game_events(before + after) == game_events(expected)
    assert [d.type for d in game_events(after)].count("game.end") == 1


def test_a_normalizer_remembers_only_after_a_game_frame(key_samples):
    normalizer = Normalizer()
    feed(normalizer, key_samples["06_trade_buy"])
    assert normalizer.changed_memory() is None, "a trade changes no game: nothing to write"
    feed(normalizer, key_samples["05_active_midgame"])
    assert normalizer.changed_memory() is not None
    assert normalizer.changed_memory() is None


@pytest.mark.parametrize("memory", [None, [], {"version": 99}, {"version": 1, "phase": "LOST", "finished": [], "game": None},
                                    {"version": 1, "phase": None, "finished": "g", "game": None},
                                    {"version": 1, "phase": None, "finished": [], "game": ["g"]},
                                    {"version": 1, "phase": None, "finished": [], "game": ["g", "ACTIVE", "maybe"] + [0] * 11}])
def test_a_memory_that_is_not_one_is_refused(memory):
    with pytest.raises(ValueError):
        Normalizer.resumed(memory)
