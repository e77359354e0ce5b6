"""The ``emojudge`` command: register evaluation sets, materialise them, run the demo.

Heavy modules (Dagster, torch, pandas, DuckDB) are imported inside the commands that need them, so ``--help`` and
``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from emojudge_models.disk import disk_full
from emojudge_models.home import HomeLayout
from emojudge_models.ingest.corpus import FORMATS
from emojudge_models.settings import Settings, SettingsError
from emojudge_pipeline.cli_support import OneLineArgumentParser, UsageError, fail, is_user_error
from emojudge_pipeline.inbox_cli import add_inbox_parser
from emojudge_pipeline.launch import instance, materialize

if TYPE_CHECKING:
    pass

log = logging.getLogger("emojudge")

DESCRIPTION = (
    "EmoJudge: speech emotion recognition over evaluation sets, materialised with Dagster into a DuckDB warehouse. "
    "Settings are EMOJUDGE_* environment variables (see the README)."
)


def add_eval_set(
    name: str, path: Path, corpus_format: str | None, settings: Settings | None = None, replace: bool = False
) -> str:
    """Check the name and corpus (one-line CorpusInvalid otherwise), record the set in the warehouse and add its
    dynamic partition; returns the format used. A name registered for another corpus is re-pointed only with
    ``replace`` (one line says so)."""
    from emojudge_models.ingest.validate import check_eval_set, check_repoint
    from emojudge_models.store import warehouse
    from emojudge_pipeline.partitions import EVAL_SETS_PARTITION

    settings = settings or Settings.from_env()
    path = path.resolve()
    corpus_format = check_eval_set(name, path, corpus_format).corpus_format
    with warehouse.connect(settings.home) as con:
        found = con.execute(warehouse.sql_text("ingest/eval_set.sql"), [name]).df()
        registered = None if found.empty else (found.at[0, "format"], found.at[0, "path"])
        if check_repoint(name, registered, corpus_format, path, replace):
            log.info(f"evaluation set {name}: re-pointed from {registered[1]} ({registered[0]}) to {path}")
        con.execute(warehouse.sql_text("ingest/register_eval_set.sql"), [name, corpus_format, str(path)])
    instance(settings).add_dynamic_partitions(EVAL_SETS_PARTITION, [name])
    return corpus_format


def list_eval_sets(settings: Settings | None = None) -> None:
    """Print the registered evaluation sets, read from the readers' snapshot (never takes the writer's lock)."""
    from emojudge_models.store import warehouse

    home = (settings or Settings.from_env()).home
    print(f"home: {home}")
    if not warehouse.warehouse_path(home).exists():
        print("no evaluation sets registered")
        return
    with warehouse.connect(home, read_only=True) as con:
        frame = warehouse.query_df(con, "ingest/list_eval_sets.sql")
    print(frame.to_string(index=False) if len(frame) else "no evaluation sets registered")


def demo(settings: Settings | None = None) -> None:
    """The main job on the embedded default: the demo corpus (or EMOJUDGE_DEMO_DATA), materialised end to end."""
    import pandas as pd

    from emojudge_models.ingest.demo_corpus import write_demo_corpus
    from emojudge_models.store import warehouse

    settings = settings or Settings.from_env()
    home = settings.home
    manifest = settings.demo_data or write_demo_corpus(HomeLayout(home).demo_corpus)
    add_eval_set("demo", manifest, "manifest", settings, replace=True)  # EMOJUDGE_DEMO_DATA says where it is
    materialize("demo", train=True, settings=settings)
    path = warehouse.warehouse_path(home)
    with warehouse.connect(home, read_only=True) as con:
        print(warehouse.query_df(con, "evaluation/demo_summary.sql").to_string(index=False))
        print("\nF1-macro and accuracy per stage (columns) and split:")
        print(con.execute(warehouse.sql_text("examples/stage_summary.sql")).df().to_string(index=False))
        gate = warehouse.query_df(con, "judge/demo_judge_gate.sql", ["demo"])
        unavailable = warehouse.scalar(con, "judge/unavailable_reason.sql", ["demo"])
        print(f"\nLLM judge ({_gate_header(gate)}):")
        if unavailable:
            print(f"judge: unavailable: {unavailable}")
        print(gate.to_string(index=False))
        print("\nTranscripts next to their predictions:")
        with pd.option_context("display.max_colwidth", 40, "display.width", 200):
            print(warehouse.query_df(con, "evaluation/demo_predictions.sql", ["demo"]).to_string(index=False))
    print("\n" + "\n".join(own_audio_lines(settings)))
    print(f"\nWarehouse: {path}  (readers: {warehouse.snapshot_path(home)}, republished after every write)")
    python_hint, duckdb_hint = query_hints(home)
    print(f"Try:       {python_hint}")
    print(f"  or, with the duckdb CLI:  {duckdb_hint}")
    print("UI:        make ui   (dg dev on http://127.0.0.1:3000; make ui DEV=dagster for dagster dev)")


def query_hints(home: Path) -> tuple[str, str]:
    """Two shell commands that query the readers' snapshot, runnable as printed without activating the venv: Python
    with the duckdb package, and the pinned DuckDB CLI (both by absolute path)."""
    from emojudge_models.store import warehouse

    examples = warehouse.sql_file("examples")
    snapshot = warehouse.snapshot_path(home)
    python_hint = (
        f"{sys.executable} -c \"import duckdb; print(duckdb.connect('{snapshot}', read_only=True)"
        f".sql(open('{examples / 'per_class_f1.sql'}').read()))\""
    )
    duckdb_cli = Path(sys.executable).with_name("duckdb")
    duckdb_cli = duckdb_cli if duckdb_cli.is_file() else Path("duckdb")
    return python_hint, f"{duckdb_cli} -readonly {snapshot} < {examples / 'modality_disagreements.sql'}"


def own_audio_lines(settings: Settings) -> list[str]:
    """What scores a newcomer's own audio after the demo, and the two commands that do it."""
    import json

    from emojudge_models.models.shipped import SHIPPED_ROOT, shipped_for
    from emojudge_models.store import warehouse

    with warehouse.connect(settings.home, read_only=True) as con:
        key = warehouse.scalar(con, "features/partition_encoder_key.sql", ["demo", "audio"])
        spec = json.loads(warehouse.scalar(con, "features/encoder_spec.sql", [key]) or "{}") if key else {}
    shipped = shipped_for("audio", "categorical", spec, settings.shipped_models or SHIPPED_ROOT)
    if settings.demo_data is not None or settings.use_demo_models:
        why = "EMOJUDGE_USE_DEMO_MODELS=1" if settings.use_demo_models else f"trained on {settings.demo_data}"
        scorer = f"the models trained by this demo ({why})"
    elif shipped is not None:
        scorer = (
            f"the shipped real-speech audio model {shipped.name} (trained on {shipped.trained_on}; licence CC BY-NC-SA "
            f"4.0, non-commercial, with attribution; model card {shipped.card}), not the demo's models: those learnt "
            "from the synthetic corpus and score only it (EMOJUDGE_USE_DEMO_MODELS=1 lets them)"
        )
    else:
        scorer = "no model: this encoder has no shipped model, and the demo's models score only the synthetic corpus"
    return [
        f"Your own audio: scored by {scorer}. Score a folder of clips (WAV/FLAC/OGG/MP3) with:",
        "  emojudge eval-set add my-clips /path/to/folder --format folder",
        "  emojudge materialize my-clips",
    ]


WORKSPACE_YAML = """\
# Written by `emojudge ui`: the EmoJudge code location, named emojudge.
load_from:
  - python_module:
      module_name: emojudge_pipeline.definitions
      attribute: defs
      location_name: emojudge
"""


DEV_COMMANDS = ("dagster", "dg")
"""How ``emojudge ui`` serves: ``dagster dev`` with the workspace below, or ``dg dev`` on the checkout's project."""


def project_root() -> Path | None:
    """The checkout this package runs from, when its pyproject.toml declares the dg project (``[tool.dg]``);
    None for an installed wheel, which has no pyproject."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    return root if pyproject.is_file() and "[tool.dg]" in pyproject.read_text() else None


def ui(host: str, port: int, settings: Settings | None = None, dev: str = "dagster") -> None:
    """``dagster dev`` or ``dg dev`` (webserver and daemon) on the instance the CLI uses, whose DAGSTER_HOME and
    dagster.yaml are created first if this is a fresh home (both commands refuse a DAGSTER_HOME that is not a
    folder).

    The server runs as a child in its own session with ``VIRTUAL_ENV`` set to this interpreter's environment (``dg``
    otherwise warns that the active environment does not match the project's); Ctrl-C or SIGTERM stops it with
    SIGTERM, which ``dagster dev`` takes as a clean shutdown, and ends with exit status 0 (no ``Aborted!``).
    """
    import os
    import signal
    import subprocess

    settings = settings or Settings.from_env()
    home = instance(settings).root_directory
    if dev == "dg":
        root = project_root()
        if root is None:
            raise UsageError("emojudge ui --dev dg needs a checkout with pyproject.toml ([tool.dg]); use --dev dagster")
        command = [str(Path(sys.executable).with_name("dg")), "dev", "--target-path", str(root)]
    else:
        workspace = Path(home) / "workspace.yaml"
        workspace.write_text(WORKSPACE_YAML)
        command = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(workspace)]
    command += ["-h", host, "-p", str(port)]
    print(f"Dagster UI ({dev} dev) on http://{host}:{port} (DAGSTER_HOME={home}); Ctrl-C stops it", flush=True)
    env = {**os.environ, "DAGSTER_HOME": str(home), "VIRTUAL_ENV": sys.prefix}
    server = subprocess.Popen(command, env=env, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        print("Dagster UI stopped", flush=True)
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code:
        raise SystemExit(code)


def _interrupt(*_: object) -> None:
    """SIGTERM handled like Ctrl-C (``emojudge ui`` then stops its server cleanly)."""
    raise KeyboardInterrupt


def _gate_header(gate) -> str:
    """What the judge gate decided on the demo set, in words (from ``judge/demo_judge_gate.sql``)."""
    states = set(gate["judge_gate"].dropna()) if len(gate) else set()
    if not states:
        return "no judgments"
    meaning = {
        "closed": "gate closed: accepted changes did net harm on development and were not applied",
        "no-evidence": "gate closed: no labelled development judgments to trust the judge on, changes not applied",
        "open": "gate open: accepted changes did no net harm on development and were applied",
        "off": "gate off: accepted changes applied by the confidence rule alone",
        "per_change": "per-change gate: only the kinds of change that did net good on development were applied",
        "judge-unavailable": "judge unavailable: it could not be reached, final labels are the fused ones",
    }
    return "; ".join(meaning.get(state, state) for state in sorted(states))


def _version() -> str:
    try:
        return version("emojudge")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="emojudge", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"emojudge {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="what to do")
    eval_set = commands.add_parser("eval-set", help="register and list evaluation sets")
    eval_set_commands = eval_set.add_subparsers(
        dest="eval_set_command", required=True, metavar="SUBCOMMAND", help="add or list"
    )
    add = eval_set_commands.add_parser("add", help="register a corpus as an evaluation set (a Dagster partition)")
    add.add_argument("name", help="the set's name: letters, digits and ._- (at most 100 characters)")
    add.add_argument("path", type=Path, help="the corpus: a folder (msp or audio files) or a manifest.csv")
    add.add_argument("--format", choices=FORMATS, default=None, help="corpus layout; default: detected from PATH")
    add.add_argument(
        "--replace", action="store_true", help="re-point NAME when it is already registered for another corpus"
    )
    eval_set_commands.add_parser("list", help="show registered evaluation sets (read-only)")
    run = commands.add_parser("materialize", help="materialise every asset for one evaluation set")
    run.add_argument("name", help="a registered evaluation set (see: emojudge eval-set list)")
    run.add_argument(
        "--train",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also (re)train the models; default: when NAME is in EMOJUDGE_TRAIN_SETS",
    )
    commands.add_parser("demo", help="generate the demo corpus and materialise everything")
    serve = commands.add_parser("ui", help="start the Dagster UI and daemon (dagster dev or dg dev) on this instance")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=3000, help="port to listen on (default 3000)")
    serve.add_argument(
        "--dev",
        choices=DEV_COMMANDS,
        default="dagster",
        help="serve with `dagster dev` (default, any install) or `dg dev` (a checkout: the [tool.dg] project)",
    )
    commands.add_parser(
        "sql",
        help="the DuckDB CLI on the warehouse, read-only (the readers' snapshot; the lake in the cluster profile)",
    )
    add_inbox_parser(commands)
    parser.epilog = command_synopsis(commands)
    return parser


def command_synopsis(commands: argparse._SubParsersAction) -> str:
    """Every command and subcommand with its arguments, one usage line each (``emojudge COMMAND --help`` says more):
    what ``emojudge --help`` ends with, so one screen shows the whole surface."""
    lines = ["commands and their arguments (emojudge COMMAND [SUBCOMMAND] --help for each one's help):"]
    for command in commands.choices.values():
        nested = command._subparsers._group_actions if command._subparsers else []
        parsers = [p for group in nested for p in group.choices.values()] or [command]
        for sub in parsers:
            lines.append("  " + " ".join(sub.format_usage().removeprefix("usage:").split()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    for noisy in ("alembic", "httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    settings = None
    try:
        settings = Settings.from_env()
        if not reads_only(args):
            settings.check_writable()
        _dispatch(args, settings)
    except SettingsError as error:
        fail(error)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:
        if settings is not None and (full := disk_full(error, settings.home)) is not None:
            fail(full)
        if is_user_error(error):
            fail(error)
        raise


READ_COMMANDS = {("eval-set", "list"), ("inbox", "list"), ("sql", None)}
"""Commands that only read: they create no folder and open the warehouse's readers' snapshot."""


def reads_only(args: argparse.Namespace) -> bool:
    subcommand = getattr(args, "eval_set_command", None) or getattr(args, "inbox_command", None)
    return (args.command, subcommand) in READ_COMMANDS


def _dispatch(args: argparse.Namespace, settings: Settings) -> None:
    from emojudge_models.store import lake

    lake.configure(settings)  # the cluster's warehouse when EMOJUDGE_WAREHOUSE=ducklake
    if handler := getattr(args, "handler", None):
        handler(args, settings)
    elif args.command == "eval-set" and args.eval_set_command == "add":
        used = add_eval_set(args.name, args.path, args.format, settings, args.replace)
        print(f"registered {args.name} ({used}) at {args.path.resolve()}; home {settings.home}")
    elif args.command == "eval-set":
        list_eval_sets(settings)
    elif args.command == "materialize":
        materialize(args.name, args.train, settings)
    elif args.command == "ui":
        ui(args.host, args.port, settings, args.dev)
    elif args.command == "sql":
        from emojudge_pipeline.sql_shell import sql_shell

        if code := sql_shell(settings):
            raise SystemExit(code)
    else:
        demo(settings)


if __name__ == "__main__":
    sys.exit(main())
