"""The ``utterances`` asset and the CLI: registration, materialisation, idempotent reruns."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from emojudge_models.settings import Settings
from emojudge_models.store import warehouse
from emojudge_pipeline import cli
from emojudge_pipeline.assets.ingest import utterances
from emojudge_pipeline.cli_support import UsageError
from emojudge_pipeline.resources import default_ingest


def test_cli_register_materialize_twice(msp_corpus: Path, emojudge_home: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EMOJUDGE_MAX_DURATION_S", "5")
    cli.main(["eval-set", "add", "msp-mini", str(msp_corpus)])
    assert "registered msp-mini (msp)" in capsys.readouterr().out
    assert cli.instance().has_dynamic_partition("eval_sets", "msp-mini")
    for _ in range(2):
        result = dg.materialize(
            [utterances],
            partition_key="msp-mini",
            instance=cli.instance(),
            resources={"warehouse_db": cli_warehouse(emojudge_home), "ingest": default_ingest(Settings.from_env())},
        )
        assert result.success
    with warehouse.connect(emojudge_home, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM utterances WHERE eval_set='msp-mini'").fetchone()[0] == 9
        rejected = con.execute("SELECT stage, count(*) FROM rejected_inputs GROUP BY 1 ORDER BY 1").fetchall()
        assert rejected == [("ingest", 3), ("transcript", 1)]
        assert con.execute("SELECT count(DISTINCT run_id) FROM utterances").fetchone()[0] == 1
    mats = result.asset_materializations_for_node("utterances")
    assert mats[0].metadata["accepted"].value == 9 and mats[0].metadata["rejected"].value == 4
    cli.main(["eval-set", "list"])
    assert "msp-mini" in capsys.readouterr().out


def test_unregistered_set_is_a_clear_error(emojudge_home: Path) -> None:
    with pytest.raises(UsageError, match="not registered"):
        cli.materialize("nope")


def cli_warehouse(home: Path):
    from emojudge_pipeline.resources import WarehouseResource

    return WarehouseResource(home=str(home))
