"""Key layout, reservation ids and the event encoding: pure functions."""

from __future__ import annotations

import pytest

from omnistock.reservations import keys
from omnistock.reservations.events import parse_entry


def test_a_reservation_id_names_its_home_partition_and_whether_it_has_parts_elsewhere():
    single = keys.reservation_id("op-1", 17, single=True)
    multi = keys.reservation_id("op-1", 17, single=False)

    assert keys.home_of(single) == keys.home_of(multi) == 17
    assert not keys.is_multi_part(single)
    assert keys.is_multi_part(multi)


def test_a_reservation_id_is_derived_from_its_operation_id():
    assert keys.reservation_id("op-1", 3, single=True) == keys.reservation_id(
        "op-1", 3, single=True
    )
    assert keys.reservation_id("op-1", 3, single=True) != keys.reservation_id(
        "op-2", 3, single=True
    )


@pytest.mark.parametrize(
    "foreign",
    [
        "",
        "r",
        "r1",
        "x1-" + "0" * 24,
        "r1-short",
        f"r{keys.PARTITIONS}-" + "0" * 24,
        "rx-" + "0" * 24,
    ],
)
def test_ids_that_are_not_ours_have_no_home(foreign: str):
    assert keys.home_of(foreign) is None


def test_every_sku_maps_to_a_partition_and_every_partition_to_its_own_tag():
    assert all(0 <= keys.partition_of(f"sku-{i}") < keys.PARTITIONS for i in range(1000))
    assert len({keys.tag(p) for p in range(keys.PARTITIONS)}) == keys.PARTITIONS


def test_a_single_server_has_one_event_stream_and_a_cluster_one_per_partition():
    assert keys.event_streams(cluster=False) == [keys.stream_key(0)]
    assert len(keys.event_streams(cluster=True)) == keys.PARTITIONS


def test_an_event_entry_holds_its_events_in_order():
    line = "\t".join(
        [
            "op-9",
            "reserve",
            "n1",
            "sku",
            "0",
            "2",
            "0",
            "0",
            "10",
            "2",
            "0",
            "1",
            "0",
            "5",
            "r3-abc",
            "1700000000000",
        ]
    )
    other = line.replace("sku", "sku2").replace("op-9", "op-10")

    first, second = parse_entry(b"1700000000000-0", {b"e": f"{line}\n{other}".encode()})

    assert first.event_id == "1700000000000-0/0" and second.event_id == "1700000000000-0/1"
    assert (first.op_id, first.kind, first.node_id, first.sku) == ("op-9", "reserve", "n1", "sku")
    assert (first.d_on_hand, first.d_reserved, first.d_held, first.d_inbound) == (0, 2, 0, 0)
    assert (first.on_hand, first.reserved, first.held, first.safety_stock) == (10, 2, 0, 1)
    assert (first.inbound, first.version, first.ref, first.at_ms) == (0, 5, "r3-abc", 1700000000000)
    assert second.sku == "sku2" and second.op_id == "op-10"
