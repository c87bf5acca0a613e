"""How the side-by-side harness times two servers (benchmarks/side_by_side.py): alike."""

from __future__ import annotations

from fakescope.benchmarks.side_by_side import (
    LEADS_IN_TURN,
    Timing,
    describe_rounds,
    timed_rounds,
)

PAIR = ("kept", "glibc_default")


class Machine:
    """A machine on which a call costs 100 ms, more straight after a pause or the other server.

    The first call after an idle pause pays 10 ms (as when a VM takes memory back), a call right
    after the other server's pays 5 ms (its caches evicted): what made the first server of each
    round slower when the pause came once per round, before it.
    """

    def __init__(self) -> None:
        self.events: list[str] = list(PAIR)  # the warm-up, in the pair's order

    def pause(self) -> None:
        self.events.append("pause")

    def call(self, name: str) -> Timing:
        calls = [event for event in self.events if event != "pause"]
        after_pause = self.events[-1] == "pause"
        after_other = calls[-1] != name
        self.events.append(name)
        return 0.100 + 0.010 * after_pause + 0.005 * after_other, 0.0, 0.0


def test_timed_rounds_time_both_servers_alike_when_a_call_costs_more_after_a_pause():
    machine = Machine()
    timings = timed_rounds(PAIR, "v.mp4", 7, machine.call, machine.pause)
    walls = {name: sorted(t[0] for t in timed) for name, timed in timings.items()}
    assert walls["kept"] == walls["glibc_default"]  # the same conditions, as often each


def test_timed_rounds_pause_before_every_call_when_a_pause_is_asked_for():
    machine = Machine()
    timings = timed_rounds(PAIR, "v.mp4", 3, machine.call, machine.pause)
    assert machine.events[len(PAIR) :: 2] == ["pause"] * 6
    assert {name: len(timed) for name, timed in timings.items()} == {"kept": 3, "glibc_default": 3}


def test_timed_rounds_let_the_two_lead_in_turn_when_rounds_follow_each_other():
    machine = Machine()
    timed_rounds(PAIR, "v.mp4", 4, machine.call, machine.pause)
    calls = [event for event in machine.events[len(PAIR) :] if event != "pause"]
    # after the warm-up (glibc_default last) kept leads, then glibc_default after it, ...
    assert calls == [
        *("kept", "glibc_default"),
        *("glibc_default", "kept"),
        *("kept", "glibc_default"),
        *("kept", "glibc_default"),
    ]


def test_describe_rounds_says_how_the_servers_took_turns_when_the_result_records_it():
    method = {"runs": 7, "pause_s": 1.0, LEADS_IN_TURN: True}
    assert describe_rounds(method) == (
        "7 interleaved runs after a warm-up, the two servers leading in turn, each call after a "
        "1.0 s pause"
    )
    assert describe_rounds({"runs": 7, LEADS_IN_TURN: True}) == (
        "7 interleaved runs after a warm-up, the two servers leading in turn"
    )
    # results from before the servers took turns keep their words
    assert describe_rounds({"runs": 7, "pause_s": 1.0}) == (
        "7 interleaved runs after a warm-up, 1.0 s apart"
    )
    assert describe_rounds({"runs": 7}) == "7 interleaved runs after a warm-up"
