"""The ``emojudge`` command: register evaluation sets, materialise them, run the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import dagster as dg
import pandas as pd

from emojudge_models.ingest.corpus import FORMATS
from emojudge_models.ingest.validate import check_eval_set
from emojudge_models.settings import Settings, SettingsError
from emojudge_models.store import warehouse
from emojudge_pipeline.cli_support import (
    USER_ERRORS,
    OneLineArgumentParser,
    UsageError,
    fail,
    one_line_console,
    user_failure,
)
from emojudge_pipeline.partitions import EVAL_SETS_PARTITION

log = logging.getLogger("emojudge")

DAGSTER_YAML = """\
# Written by emojudge. No concurrency pool: warehouse write sessions serialise themselves (docs/scale-out.md).
telemetry:
  enabled: false
"""


def instance(settings: Settings | None = None) -> dg.DagsterInstance:
    """The persistent Dagster instance shared with ``dagster dev`` (DAGSTER_HOME, default $EMOJUDGE_HOME/dagster)."""
    home = (settings or Settings.from_env()).dagster_dir
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def add_eval_set(name: str, path: Path, corpus_format: str | None, settings: Settings | None = None) -> str:
    """Check the name and corpus (one-line CorpusInvalid otherwise), record the set in the warehouse and add its
    dynamic partition; returns the format used."""
    settings = settings or Settings.from_env()
    path = path.resolve()
    corpus_format = check_eval_set(name, path, corpus_format).corpus_format
    with warehouse.connect(settings.home) as con:
        con.execute(warehouse.sql_text("ingest/register_eval_set.sql"), [name, corpus_format, str(path)])
    instance(settings).add_dynamic_partitions(EVAL_SETS_PARTITION, [name])
    return corpus_format


def list_eval_sets(settings: Settings | None = None) -> None:
    with warehouse.connect((settings or Settings.from_env()).home) as con:
        frame = warehouse.query_df(con, "ingest/list_eval_sets.sql")
    print(frame.to_string(index=False) if len(frame) else "no evaluation sets registered")


def materialize(name: str, train: bool | None = None, settings: Settings | None = None) -> None:
    """Materialise every asset for partition ``name`` in dependency order, in one Dagster run.

    Training assets run too when ``name`` is one of EMOJUDGE_TRAIN_SETS (or ``train`` is True); otherwise the set is
    scored by the models already registered.
    """
    from emojudge_pipeline.definitions import build_definitions

    settings = settings or Settings.from_env()
    defs = build_definitions(settings)
    inst = instance(settings)
    if not inst.has_dynamic_partition(EVAL_SETS_PARTITION, name):
        raise UsageError(f"evaluation set {name!r} is not registered: emojudge eval-set add {name} PATH")
    job = defs.resolve_implicit_global_asset_job_def().with_logger_defs({"console": one_line_console})
    graph = defs.resolve_asset_graph()
    if train is None:
        train = name in settings.train_sets
    selection = [key for key in graph.get_all_asset_keys() if train or graph.get(key).is_partitioned]
    result = job.execute_in_process(
        instance=inst,
        partition_key=name,
        asset_selection=selection,
        run_config={"loggers": {"console": {"config": {"log_level": settings.log_level}}}},
        raise_on_error=False,
    )
    if not result.success and (reason := user_failure(result)):
        raise UsageError(reason)
    if not result.success:
        raise SystemExit(f"error: materialising {name} failed; see the run {result.run_id} in the Dagster UI")
    print(f"materialised {len(selection)} assets for {name} (run {result.run_id})")


def demo(settings: Settings | None = None) -> None:
    """The main job on the embedded default: the demo corpus (or EMOJUDGE_DEMO_DATA), materialised end to end."""
    from emojudge_models.ingest.demo_corpus import write_demo_corpus

    settings = settings or Settings.from_env()
    home = settings.home
    manifest = settings.demo_data or write_demo_corpus(home / "demo_corpus")
    add_eval_set("demo", manifest, "manifest", settings)
    materialize("demo", train=True, settings=settings)
    path = warehouse.warehouse_path(home)
    with warehouse.connect(home, read_only=True) as con:
        print(warehouse.query_df(con, "evaluation/demo_summary.sql").to_string(index=False))
        print("\nF1-macro and accuracy per stage (columns) and split:")
        print(con.execute(warehouse.sql_text("store/examples/stage_summary.sql")).df().to_string(index=False))
        print("\nLLM judge (judge_gate closed: accepted changes did net harm on development and were not applied):")
        print(warehouse.query_df(con, "judge/demo_judge_gate.sql", ["demo"]).to_string(index=False))
        print("\nTranscripts next to their predictions:")
        with pd.option_context("display.max_colwidth", 40, "display.width", 200):
            print(warehouse.query_df(con, "evaluation/demo_predictions.sql", ["demo"]).to_string(index=False))
    examples = warehouse.sql_file("store/examples")
    snapshot = warehouse.snapshot_path(home)
    print(f"\nWarehouse: {path}  (readers: {snapshot}, republished after every write)")
    print(
        f"Try:       {sys.executable} -c \"import duckdb; print(duckdb.connect('{snapshot}', read_only=True)"
        f".sql(open('{examples / 'per_class_f1.sql'}').read()))\""
    )
    print(f"  or, with the duckdb CLI:  duckdb -readonly {snapshot} < {examples / 'modality_disagreements.sql'}")
    print("UI:        make ui   (dagster dev on http://127.0.0.1:3000)")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = OneLineArgumentParser(prog="emojudge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    eval_set = commands.add_parser("eval-set", help="register and list evaluation sets")
    eval_set_commands = eval_set.add_subparsers(dest="eval_set_command", required=True)
    add = eval_set_commands.add_parser("add", help="register a corpus as an evaluation set (a partition)")
    add.add_argument("name")
    add.add_argument("path", type=Path)
    add.add_argument("--format", choices=FORMATS, default=None, help="default: detected from the layout")
    eval_set_commands.add_parser("list", help="show registered evaluation sets")
    run = commands.add_parser("materialize", help="materialise every asset for one evaluation set")
    run.add_argument("name")
    run.add_argument(
        "--train",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also (re)train the models; default: when NAME is in EMOJUDGE_TRAIN_SETS",
    )
    commands.add_parser("demo", help="generate the demo corpus and materialise everything")
    args = parser.parse_args(argv)
    try:
        _dispatch(args, Settings.from_env())
    except (*USER_ERRORS, SettingsError) as error:
        fail(error)


def _dispatch(args: argparse.Namespace, settings: Settings) -> None:
    if args.command == "eval-set" and args.eval_set_command == "add":
        used = add_eval_set(args.name, args.path, args.format, settings)
        print(f"registered {args.name} ({used}) at {args.path.resolve()}")
    elif args.command == "eval-set":
        list_eval_sets(settings)
    elif args.command == "materialize":
        materialize(args.name, args.train, settings)
    else:
        demo(settings)


if __name__ == "__main__":
    sys.exit(main())
