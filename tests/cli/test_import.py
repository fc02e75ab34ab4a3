"""``omnistock import``: good rows applied, bad rows reported by line and left alone, a re-run
applying nothing twice (not even after a sale moved a position in between), a corrected file
continuing an import, dry runs writing nothing, and 10,000 rows in a few seconds.

Runs the command in-process on the session's Valkey with a SQLite file of each test's own;
node and SKU names are unique to each test.
"""

from __future__ import annotations

import csv
import time
import uuid
from pathlib import Path

import pytest

from omnistock.domain.stock import Adjustment, Line, Reason
from omnistock.runtime.settings import Settings
from omnistock.runtime.targets import local_target
from omnistock.runtime.valkey_server import EmbeddedValkey
from tests.cli.support import make_nodes, omnistock, positions, use_data_dir


@pytest.fixture
def settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, valkey_server: EmbeddedValkey
) -> Settings:
    return use_data_dir(monkeypatch, tmp_path / "data", valkey_server.url)


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_good_rows_are_applied_and_bad_rows_reported_by_line(
    settings: Settings, tmp_path: Path, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = f"a-{uid}", f"b-{uid}"
    await make_nodes(settings, a, b)
    source = write(
        tmp_path / "stock.csv",
        "node_id,sku,on_hand,safety_stock\n"
        f"{a},tee-{uid},10,\n"  # line 2: good, safety stock left as it is
        f"{b},tee-{uid},4,1\n"  # 3: good
        f"nowhere-{uid},tee-{uid},5,\n"  # 4: unknown node
        f"{a},bad sku,5,\n"  # 5: bad id
        f"{a},neg-{uid},-1,\n"  # 6: negative
        f"{a},frac-{uid},2.5,\n"  # 7: not a whole number
        f"{a},dup-{uid},3,\n"  # 8: the same position as line 10
        "\n"  # 9: blank, skipped
        f"{a},dup-{uid},4,\n"  # 10
        f"{a},short-{uid}\n"  # 11: a field missing
        f"{b},shoe-{uid},7,x\n",  # 12: bad safety stock
    )
    errors = tmp_path / "errors.csv"

    status = omnistock("import", str(source), "--errors", str(errors), "--no-progress")

    assert status == 1
    out = capsys.readouterr().out
    with errors.open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["line"]) for r in rows] == [4, 5, 6, 7, 8, 10, 11, 12]
    by_line = {int(r["line"]): r["error"] for r in rows}
    assert "unknown node" in by_line[4]
    assert "sku" in by_line[5]
    assert "negative" in by_line[6]
    assert "whole number" in by_line[7]
    assert "line(s) 10" in by_line[8] and "line(s) 8" in by_line[10]
    assert "fields" in by_line[11]
    assert "safety_stock" in by_line[12]
    for line in by_line:
        assert f"line {line}:" in out
    assert "2 row(s) applied" in out and "8 failed" in out
    found = await positions(
        settings,
        [
            (a, f"tee-{uid}"),
            (b, f"tee-{uid}"),
            (a, f"neg-{uid}"),
            (a, f"frac-{uid}"),
            (a, f"dup-{uid}"),
            (b, f"shoe-{uid}"),
        ],
    )
    assert found[(a, f"tee-{uid}")] == (10, 0, 1)
    assert found[(b, f"tee-{uid}")] == (4, 1, 1)
    for pair in [(a, f"neg-{uid}"), (a, f"frac-{uid}"), (a, f"dup-{uid}"), (b, f"shoe-{uid}")]:
        assert found[pair] == (0, 0, 0), pair  # never written


async def test_a_rerun_applies_nothing_twice_even_after_a_sale(
    settings: Settings, tmp_path: Path, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    node = f"n-{uid}"
    await make_nodes(settings, node)
    skus = [f"s{i}-{uid}" for i in range(5)]
    source = write(
        tmp_path / "stock.csv",
        "node_id,sku,on_hand\n" + "".join(f"{node},{sku},{10 + i}\n" for i, sku in enumerate(skus)),
    )
    assert omnistock("import", str(source), "--no-progress") == 0
    assert "5 row(s) applied" in capsys.readouterr().out

    # Between the runs: three units of the first SKU sold, and one reserved.
    async with local_target(settings) as target:
        await target.ledger.adjust(f"sale-{uid}", [Adjustment(node, skus[0], -3, Reason.SALE)])
        await target.ledger.reserve(f"res-{uid}", [Line(node, skus[1], 1)], ttl_ms=600_000)
    before = await positions(settings, [(node, s) for s in skus])

    assert omnistock("import", str(source), "--no-progress") == 0

    out = capsys.readouterr().out
    assert "0 row(s) applied, 5 already applied by an earlier run" in out
    after = await positions(settings, [(node, s) for s in skus])
    assert after == before
    assert after[(node, skus[0])] == (7, 0, 2)  # the sale stands: not counted back to 10


async def test_an_interrupted_import_finishes_on_a_rerun(
    settings: Settings, tmp_path: Path, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows applied before an interruption replay; the rest are applied."""
    from omnistock.runtime import importer

    node = f"n-{uid}"
    await make_nodes(settings, node)
    data = (
        "node_id,sku,on_hand\n" + "".join(f"{node},s{i}-{uid},{i}\n" for i in range(20))
    ).encode()
    import_id = importer.import_id_of(data)
    half = importer.parse(data, {node}).rows[:10]
    async with local_target(settings) as target:
        for row in half:  # what the first run got done before it was stopped
            await target.set_stock(
                importer.op_id(import_id, row), row.node_id, row.sku, row.on_hand
            )
    source = tmp_path / "stock.csv"
    source.write_bytes(data)

    assert omnistock("import", str(source), "--no-progress") == 0

    assert "10 row(s) applied, 10 already applied" in capsys.readouterr().out
    found = await positions(settings, [(node, f"s{i}-{uid}") for i in range(20)])
    assert all(found[(node, f"s{i}-{uid}")] == (i, 0, 1) for i in range(20))


async def test_a_corrected_file_continues_its_import(
    settings: Settings, tmp_path: Path, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    node = f"n-{uid}"
    await make_nodes(settings, node)
    first = write(
        tmp_path / "stock.csv",
        f"node_id,sku,on_hand\n{node},a-{uid},5\n{node},b-{uid},oops\n",
    )
    assert omnistock("import", str(first), "--no-progress") == 1
    out = capsys.readouterr().out
    import_id = out.split("import id ")[1].split(")")[0]
    async with local_target(settings) as target:
        await target.ledger.adjust(f"sale-{uid}", [Adjustment(node, f"a-{uid}", -2, Reason.SALE)])
    fixed = write(
        tmp_path / "fixed.csv",
        f"node_id,sku,on_hand\n{node},a-{uid},5\n{node},b-{uid},8\n",
    )

    assert omnistock("import", str(fixed), "--import-id", import_id, "--no-progress") == 0

    assert "1 row(s) applied, 1 already applied" in capsys.readouterr().out
    found = await positions(settings, [(node, f"a-{uid}"), (node, f"b-{uid}")])
    assert found == {(node, f"a-{uid}"): (3, 0, 2), (node, f"b-{uid}"): (8, 0, 1)}


async def test_a_dry_run_validates_and_writes_nothing(
    settings: Settings, tmp_path: Path, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    node = f"n-{uid}"
    await make_nodes(settings, node)
    source = write(
        tmp_path / "stock.csv",
        f"sku,node_id,on_hand\na-{uid},{node},5\nb-{uid},{node},-2\n",
    )

    assert omnistock("import", str(source), "--dry-run", "--no-progress") == 1

    out = capsys.readouterr().out
    assert "line 3: on_hand '-2' is negative" in out
    assert "dry run, nothing written): 1 row(s) valid, 1 with errors" in out
    found = await positions(settings, [(node, f"a-{uid}")])
    assert found[(node, f"a-{uid}")] == (0, 0, 0)
    # Nothing was remembered either: the real run applies the row.
    assert omnistock("import", str(source), "--no-progress") == 1
    assert "1 row(s) applied" in capsys.readouterr().out


async def test_a_reserved_position_refuses_a_count_below_it_and_says_so(
    settings: Settings, tmp_path: Path, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    node = f"n-{uid}"
    await make_nodes(settings, node)
    async with local_target(settings) as target:
        await target.ledger.set_stock(f"set-{uid}", node, f"a-{uid}", 5)
        await target.ledger.reserve(f"res-{uid}", [Line(node, f"a-{uid}", 4)], ttl_ms=600_000)
    source = write(tmp_path / "stock.csv", f"node_id,sku,on_hand\n{node},a-{uid},2\n")

    assert omnistock("import", str(source), "--no-progress") == 1

    assert "line 2: on_hand 2 is below the 4 reserved and held there" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("node,sku,qty\nx,y,1\n", "header"),
        ("node_id,sku,on_hand,colour\n", "header"),
    ],
)
def test_a_file_without_the_header_is_refused_whole(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    source = write(tmp_path / "stock.csv", text)
    assert omnistock("import", str(source), "--no-progress") == 2
    assert message in capsys.readouterr().err


async def test_ten_thousand_rows_import_in_seconds(
    settings: Settings, tmp_path: Path, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes = [f"n{i}-{uid}" for i in range(10)]
    await make_nodes(settings, *nodes)
    source = write(
        tmp_path / "big.csv",
        "node_id,sku,on_hand\n"
        + "".join(f"{nodes[i % 10]},sku{i // 10}-{uid},{i % 50}\n" for i in range(10_000)),
    )

    started = time.monotonic()
    assert omnistock("import", str(source), "--no-progress") == 0
    elapsed = time.monotonic() - started

    assert "10,000 row(s) applied" in capsys.readouterr().out
    assert elapsed < 20, f"10,000 rows took {elapsed:.1f} s"
    found = await positions(settings, [(nodes[9], f"sku999-{uid}")])
    assert found[(nodes[9], f"sku999-{uid}")] == (9999 % 50, 0, 1)
