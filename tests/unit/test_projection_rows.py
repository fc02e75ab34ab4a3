"""The rows the projector hands SQLite as they are must name exactly the journal's columns."""

from __future__ import annotations

import msgspec

from omnistock.reservations.events import LedgerEvent
from omnistock.store.database import documents, events
from omnistock.store.projector import document_row


def test_an_events_fields_are_the_journal_columns_besides_its_sequence():
    fields = {f.name for f in msgspec.structs.fields(LedgerEvent)}

    assert fields == {c.name for c in events.columns} - {"seq"}


def test_a_parts_row_names_every_column_of_the_projection_and_nothing_else():
    row = document_row("r", "r7-abc", 7, b'{"st":"a","exp":1700000000000}', -1, "0-1", 5)

    assert list(row) == [c.name for c in documents.columns]
