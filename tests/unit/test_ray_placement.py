"""The Ray controller's placement (``dfstream.ray.placement``), on its own: streams spread by free
slots, a node lost and back, and as few streams moved as that takes."""

from __future__ import annotations

import pytest

from dfstream.ray.placement import capacity, place


def moved(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {s for s in after if s in before and before[s] != after[s]}


def loads(plan, nodes) -> list[int]:  # noqa: ANN001
    return [len(plan.on(n)) for n in nodes]


def test_two_hundred_streams_over_four_nodes_a_node_lost_and_back():
    streams = [f"cam{i:03d}" for i in range(200)]
    nodes = {f"node{i}": 70 for i in range(4)}  # room for all on three
    plan = place(streams, nodes, {})
    assert sorted(plan.of) == streams and plan.waiting == []
    assert loads(plan, nodes) == [50, 50, 50, 50]

    lost = dict(nodes)
    del lost["node2"]
    after = place(streams, lost, plan.of)
    assert sorted(after.of) == streams and "node2" not in after.of.values()
    assert max(loads(after, lost)) - min(loads(after, lost)) <= 1  # within one of even
    assert moved(plan.of, after.of) == set(plan.on("node2"))  # only the lost node's streams moved

    back = place(streams, nodes, after.of)
    assert max(loads(back, nodes)) - min(loads(back, nodes)) <= 1
    assert len(moved(after.of, back.of)) == len(back.on("node2")) == 50  # the fewest moves that even it out


def test_streams_wait_for_a_slot_and_take_one_when_a_node_joins():
    plan = place(["a", "b", "c"], {"n1": 2}, {})
    assert len(plan.on("n1")) == 2 and len(plan.waiting) == 1
    joined = place(["a", "b", "c"], {"n1": 2, "n2": 2}, plan.of)
    assert joined.waiting == [] and not moved(plan.of, joined.of)  # the waiting one took the new slot


def test_a_stream_stays_where_it_is_when_others_come_and_go():
    plan = place(["a", "b", "c", "d"], {"n1": 4, "n2": 4}, {})
    fewer = place(["a", "c"], {"n1": 4, "n2": 4}, plan.of)
    assert {s: fewer.of[s] for s in ("a", "c")} == {s: plan.of[s] for s in ("a", "c")} or (
        len(moved(plan.of, fewer.of)) == 1  # both were on one node: one moves to even them out
    )


def test_unequal_nodes_fill_by_load_within_their_room():
    plan = place([f"s{i}" for i in range(10)], {"big": 8, "small": 2}, {})
    assert len(plan.on("small")) == 2 and len(plan.on("big")) == 8


@pytest.mark.parametrize(
    ("resources", "num_cpus", "needs", "expected"),
    [
        ({"CPU": 3, "dfstream_stream_slots": 3}, 0.5, {"dfstream_stream_slots": 1}, 3),
        ({"CPU": 4, "dfstream_models": 4}, 0.5, {"dfstream_stream_slots": 1}, 0),  # the head: no slots
        ({"CPU": 2}, 1.0, {}, 2),
        ({"CPU": 2}, 0.0, {}, 1000),
    ],
)
def test_a_nodes_capacity_is_what_it_advertises_over_what_a_stream_takes(resources, num_cpus, needs, expected):
    assert capacity(resources, num_cpus, needs, 1000) == expected


def test_a_file_read_at_its_own_pace_moves_only_with_its_node():
    plan = place(["f1", "f2", "live"], {"n1": 4}, {})
    joined = place(["f1", "f2", "live"], {"n1": 4, "n2": 4}, plan.of, pinned={"f1", "f2"})
    assert joined.on("n2") == ["live"]  # the live one evens the load; the files would start again
    only_files = place(
        ["f1", "f2", "f3"], {"n1": 4, "n2": 4}, {"f1": "n1", "f2": "n1", "f3": "n1"}, pinned={"f1", "f2", "f3"}
    )
    assert only_files.on("n1") == ["f1", "f2", "f3"]
    lost = place(["f1", "f2"], {"n2": 4}, {"f1": "n1", "f2": "n1"}, pinned={"f1", "f2"})
    assert lost.on("n2") == ["f1", "f2"]  # its node gone: it goes with the rest
