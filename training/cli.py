"""`python -m training`: train, publish, list, show, promote and roll back models in a store; monitor them."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from lambda_forest.batch import DEFAULT_CHUNK_BYTES
from lambda_forest.capture import label_line, timestamp
from lambda_forest.config import default_sign_key, default_store, parse_window
from lambda_forest.errors import LambdaForestError, TrainingError
from lambda_forest.manifest import Manifest
from lambda_forest.monitor_report import render_html, render_text
from lambda_forest.monitoring import build_report, exit_code
from lambda_forest.schema import check_row_id, label_checker
from lambda_forest.signing import KmsSigner, alias_signer
from lambda_forest.store import DEFAULT_ALIAS, LABELS, AliasSigner, ModelStore, open_store
from lambda_forest.table_files import DEFAULT_DELIMITER, DEFAULT_ENCODING, FORMATS
from training.tables import DEFAULT_MAX_CATEGORIES

DEFAULT_STORE = default_store()

EXIT_ERROR = 1
EXIT_QUALITY_GATE = 3
# The monitor's 1 and 2 mean warn and alert, so its own failure needs a code of its own.
EXIT_MONITOR_FAILED = 4


class CommandParser(argparse.ArgumentParser):
    """argparse, with the exit status of a command-line mistake set per command (argparse's is 2)."""

    usage_error_status = 2

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(self.usage_error_status, f"{self.prog}: error: {message}\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # found after the command's own arguments: the command's status applies
            self.usage_error_status = getattr(parsed, "usage_error_status", self.usage_error_status)
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _max_features(value: str) -> str | float | int | None:
    if value in ("sqrt", "log2"):
        return value
    if value in ("all", "none", "None"):
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        fraction = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected sqrt, log2, all, a count or a fraction") from None
    if not 0 < fraction <= 1:
        raise argparse.ArgumentTypeError(f"{value!r}: a fraction must be in (0, 1]")
    return fraction


def _columns(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _delimiter(value: str) -> str:
    """One character; `\\t` (as a shell passes '\\t') is a tab."""
    value = {"\\t": "\t"}.get(value, value)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not one character (\\t for a tab)")
    return value


def add_csv_options(parser: argparse.ArgumentParser) -> None:
    """How a CSV file is written: the same options, with the same meaning, for training and for scoring."""
    parser.add_argument(
        "--delimiter",
        type=_delimiter,
        default=DEFAULT_DELIMITER,
        help="the CSV's value separator, one character, \\t for a tab (default %(default)r)",
    )
    parser.add_argument("--encoding", default=DEFAULT_ENCODING, help="the CSV's text encoding (default %(default)s)")


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be more than 0")
    return number


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


STORE_HELP = "model store: a local directory or s3://BUCKET/PREFIX (default %(default)s, or $LAMBDA_FOREST_STORE)"
SIGN_KEY_HELP = (
    "KMS asymmetric key (ARN, id or alias/NAME) that signs {what} (kms:Sign; default $LAMBDA_FOREST_SIGN_KEY); "
    "a function deployed with ModelSigningKeyArn serves only signed models"
)


def build_parser(prog: str = "python -m training") -> argparse.ArgumentParser:
    parser = CommandParser(prog=prog, description=__doc__)
    parser.add_argument("--store", default=DEFAULT_STORE, help=STORE_HELP)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.set_defaults(prog=prog)
    # The same options after the command (`train --store ...`); given there, they win.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, help="model store (as before the command)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[common])

    def sign_key(subparser: argparse.ArgumentParser, what: str) -> None:
        subparser.add_argument("--sign-key", default=default_sign_key(), help=SIGN_KEY_HELP.format(what=what))

    train = command("train", "train a forest, evaluate it and publish a version")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="built-in dataset: iris, wine, breast_cancer, digits, diabetes")
    source.add_argument("--csv", metavar="PATH", help="a CSV file with a header row: a path or s3://BUCKET/KEY")
    source.add_argument("--parquet", metavar="PATH", help="a Parquet file: a path or s3://BUCKET/KEY")
    train.add_argument("--target", help="the column to predict (with --csv or --parquet)")
    train.add_argument(
        "--categorical", type=_columns, default=(), metavar="COL,...", help="treat these columns as categories"
    )
    train.add_argument("--drop", type=_columns, default=(), metavar="COL,...", help="leave these columns out")
    train.add_argument(
        "--max-categories",
        type=_positive_int,
        default=DEFAULT_MAX_CATEGORIES,
        help="refuse categorical columns with more distinct values (default %(default)s)",
    )
    add_csv_options(train)
    train.add_argument(
        "--task", choices=["classification", "regression"], help="override the task inferred from the target"
    )
    train.add_argument("--name", help="model name in the store (default: the dataset or CSV file name)")
    train.add_argument("--trees", type=_positive_int, default=100, help="number of trees (default %(default)s)")
    train.add_argument("--max-depth", type=_positive_int, help="deepest a tree may grow (default: unlimited)")
    train.add_argument(
        "--min-samples-leaf", type=_positive_int, default=1, help="fewest training rows in a leaf (default %(default)s)"
    )
    train.add_argument(
        "--max-features",
        type=_max_features,
        default="sqrt",
        help="features tried per split: sqrt, log2, all, a count or a fraction "
        "(default sqrt for classifiers, all for regressors)",
    )
    train.add_argument(
        "--class-weight",
        choices=["balanced", "balanced_subsample"],
        help="weight classes inversely to their frequency (classifiers)",
    )
    train.add_argument("--random-state", type=int, default=42, help="seed (default %(default)s)")
    train.add_argument("--n-jobs", type=int, default=-1, help="training processes; -1 uses every core")
    train.add_argument("--test-size", type=float, default=0.2, help="hold-out fraction (default %(default)s)")
    train.add_argument(
        "--min-score", type=float, help="refuse to publish below this hold-out score (accuracy, or R² for regressors)"
    )
    train.add_argument("--promote", action="store_true", help=f"point the {DEFAULT_ALIAS!r} alias at the new version")
    train.add_argument("--alias", default=DEFAULT_ALIAS, help="alias that --promote moves (default %(default)s)")
    train.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="publish only model.joblib (served with scikit-learn), not the compiled forest.npz",
    )
    train.add_argument(
        "--if-unpublished",
        action="store_true",
        help="do nothing when the alias already points at a version (for setup scripts)",
    )
    sign_key(train, "the new version's manifest (and the alias, with --promote)")

    listing = command("list", "versions of a model, newest first, with metrics and aliases")
    listing.add_argument("--name", required=True)

    show = command("show", "a version's manifest")
    show.add_argument("version")
    show.add_argument("--name", required=True)

    promote = command("promote", "point an alias at a version")
    promote.add_argument("version")
    promote.add_argument("--name", required=True)
    promote.add_argument("--alias", default=DEFAULT_ALIAS)
    sign_key(promote, "the alias move, and the version if it is unsigned (after checking its files)")

    rollback = command("rollback", "point an alias back at its previous version")
    rollback.add_argument("--name", required=True)
    rollback.add_argument("--alias", default=DEFAULT_ALIAS)
    sign_key(rollback, "the alias move")

    monitor = command(
        "monitor",
        "input drift, output drift and live quality from captured predictions and labels (exit 0 ok, 1 warn, 2 alert)",
    )
    monitor.usage_error_status = EXIT_MONITOR_FAILED  # never read as a warn (1) or an alert (2)
    monitor.set_defaults(usage_error_status=EXIT_MONITOR_FAILED)
    monitor.add_argument("--name", required=True)
    monitor.add_argument(
        "--since", type=_moment, default="7d", help="window start: a duration back from --until (7d, 24h) or a UTC time"
    )
    monitor.add_argument("--until", type=_moment, help="window end, a UTC time (default: now)")
    monitor.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    monitor.add_argument("--html", type=Path, help="where to write the HTML report (default monitor-NAME.html)")
    monitor.add_argument("--no-html", dest="write_html", action="store_false", help="write no HTML report")
    monitor.add_argument(
        "--save", action="store_true", help="also store report.json and report.html under the store's reports/"
    )

    labels = command("labels", "ground truth for captured predictions")
    labels_commands = labels.add_subparsers(dest="labels_command", required=True, metavar="COMMAND")
    upload = labels_commands.add_parser("upload", help="record a CSV file of id,label rows as labels", parents=[common])
    upload.add_argument("file", type=Path, help="CSV with a header row: id,label")
    upload.add_argument("--name", required=True)
    upload.add_argument(
        "--alias", default=DEFAULT_ALIAS, help="whose classes (or task) the labels are checked against (%(default)s)"
    )
    score = command(
        "score", "predict every row of a CSV, JSON lines or Parquet file (locally, or on AWS with --on aws)"
    )
    score.add_argument("--name", required=True, help="model name in the store")
    which = score.add_mutually_exclusive_group()
    which.add_argument("--version", help="score with this version (default: the version --alias points at)")
    which.add_argument(
        "--alias", default=DEFAULT_ALIAS, help="alias to resolve, once, at the start (default %(default)s)"
    )
    score.add_argument("--input", required=True, help="a local file or s3://BUCKET/KEY (.csv, .jsonl, .parquet)")
    score.add_argument(
        "--output", required=True, help="a local file, a directory/ or s3://BUCKET/PREFIX (one part per chunk)"
    )
    score.add_argument("--format", choices=FORMATS, help="output format (default: the output file's, else the input's)")
    score.add_argument("--input-format", choices=FORMATS, help="input format (default: from the input's name)")
    score.add_argument("--id-column", help="copy this input column into every prediction and error row")
    add_csv_options(score)
    score.add_argument(
        "--chunk-mb",
        type=_positive_float,
        default=DEFAULT_CHUNK_BYTES / 2**20,
        help="bytes per chunk (default %(default)g MB)",
    )
    score.add_argument("--on", choices=["local", "aws"], default="local", help="where to score (default %(default)s)")
    score.add_argument(
        "--state-machine",
        default=os.environ.get("LAMBDA_FOREST_STATE_MACHINE"),
        help="--on aws: the BatchScore state machine ARN (default $LAMBDA_FOREST_STATE_MACHINE)",
    )
    score.add_argument("--stack", help="--on aws: read the state machine from this stack's outputs")
    score.add_argument("--concurrency", type=_positive_int, help="--on aws: workers at once (default: the stack's)")
    return parser


def _moment(value: str) -> timedelta | datetime:
    """A window bound: a duration back from the window's end (7d, 24h, 90m, 2w) or a UTC time."""
    try:
        return parse_window(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected a duration like 7d or 24h, or a time like 2026-12-01"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def command_train(args: argparse.Namespace, store: ModelStore) -> int:
    from training.data import load_builtin, report_lines
    from training.forest import ForestParams, build_artifact, publish, train
    from training.tables import CSV, PARQUET, TableOptions, load_table, source_name

    started = time.perf_counter()
    table = args.csv or args.parquet
    name = args.name or (source_name(table) if table else args.dataset)
    if args.if_unpublished and (current := store.read_alias(name, args.alias)):
        print(f"{name}: {args.alias} already points at {current.version} in {store.uri}; not training")
        return 0
    if table:
        if not args.target:
            raise TrainingError(f"{'--csv' if args.csv else '--parquet'} needs --target COLUMN: the column to predict.")
        say(f"reading {table}")
        options = TableOptions(args.categorical, args.drop, args.max_categories, args.delimiter, args.encoding)
        data = load_table(table, args.target, args.task, CSV if args.csv else PARQUET, options)
    else:
        if args.categorical or args.drop:
            raise TrainingError("--categorical and --drop apply to --csv and --parquet tables.")
        say(f"loading dataset {args.dataset}")
        data = load_builtin(args.dataset)
    for line in report_lines(data):
        say(line)
    params = ForestParams(
        n_estimators=args.trees,
        max_depth=args.max_depth,
        min_samples_leaf=args.min_samples_leaf,
        max_features=args.max_features,
        class_weight=args.class_weight,
        random_state=args.random_state,
        n_jobs=args.n_jobs,
    )
    model = train(data, params, args.test_size, progress=say)
    metric, score = model.primary_metric
    say("hold-out " + ", ".join(f"{key} {value:.4f}" for key, value in model.metrics.items()))
    if args.min_score is not None and score < args.min_score:
        say(f"error: hold-out {metric} {score:.4f} is below --min-score {args.min_score}; nothing was published.")
        return EXIT_QUALITY_GATE
    say("packaging the artifact" + (" and verifying the compiled forest against the estimator" if args.compile else ""))
    manifest, files = build_artifact(name, model, compile=args.compile, progress=say)
    signer = KmsSigner(args.sign_key) if args.sign_key else None
    say(f"publishing {name} {manifest.version} to {store.uri}" + (f", signed with {args.sign_key}" if signer else ""))
    publish(store, manifest, files, signer)
    promoted = store.set_alias(name, args.alias, manifest.version, _alias_signer(signer)) if args.promote else None
    print(f"published {name} version {manifest.version}")
    print(f"  store    {store.uri}")
    print(
        f"  task     {manifest.task}, {manifest.params['n_estimators']} trees, {len(manifest.feature_names)} features"
    )
    print("  metrics  " + ", ".join(f"{key}={value}" for key, value in manifest.metrics.items()))
    print("  files    " + ", ".join(f"{file} {len(data) / 1e6:.2f} MB" for file, data in files.items()))
    if promoted:
        print(f"  alias    {args.alias} -> {manifest.version} (was {promoted.previous or 'unset'})")
    else:
        print(f"  promote  {args.prog} --store {args.store} promote {manifest.version} --name {name}")
    print(f"  took     {time.perf_counter() - started:.1f} s")
    return 0


def command_list(args: argparse.Namespace, store: ModelStore) -> int:
    versions = store.list_versions(args.name)
    if not versions:
        raise TrainingError(f"Model {args.name} has no published versions in {store.uri}; train one first.")
    aliases = _aliases_by_version(store, args.name)
    for version in versions:
        manifest = Manifest.from_json(store.read_manifest(args.name, version))
        metrics = ", ".join(f"{key}={value:.4g}" for key, value in manifest.metrics.items())
        tags = f"  [{', '.join(aliases.get(version, []))}]" if version in aliases else ""
        print(f"{version}  {manifest.estimator:<22} {metrics}{tags}")
    return 0


def _aliases_by_version(store: ModelStore, name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for alias_name, alias in store.list_aliases(name).items():
        found.setdefault(alias.version, []).append(alias_name)
    return found


def command_show(args: argparse.Namespace, store: ModelStore) -> int:
    manifest = Manifest.from_json(store.read_manifest(args.name, args.version))
    print(json.dumps(manifest.to_dict(), indent=2))
    return 0


def command_promote(args: argparse.Namespace, store: ModelStore) -> int:
    signer = KmsSigner(args.sign_key) if args.sign_key else None
    if signer is not None:
        from training.forest import sign_published

        if sign_published(store, args.name, args.version, signer):
            print(f"{args.name}: signed version {args.version} with {args.sign_key} (its files match its manifest)")
    moved = store.set_alias(args.name, args.alias, args.version, _alias_signer(signer))
    signed = ", signed" if signer else ""
    print(f"{args.name}: {args.alias} -> {moved.version} (was {moved.previous or 'unset'}){signed}")
    return 0


def _alias_signer(signer: KmsSigner | None) -> AliasSigner | None:
    return alias_signer(signer) if signer is not None else None


def command_rollback(args: argparse.Namespace, store: ModelStore) -> int:
    before = store.read_alias(args.name, args.alias)
    moved = store.rollback(args.name, args.alias, _alias_signer(KmsSigner(args.sign_key) if args.sign_key else None))
    print(f"{args.name}: {args.alias} -> {moved.version} (rolled back from {before.version if before else '?'})")
    return 0


def command_monitor(args: argparse.Namespace, store: ModelStore) -> int:
    until = args.until or datetime.now(UTC)
    if isinstance(until, timedelta):
        raise TrainingError("--until takes a time (like 2026-12-01T10:00), not a duration.")
    since = until - args.since if isinstance(args.since, timedelta) else args.since
    if since >= until:
        raise TrainingError(f"--since {since:%Y-%m-%dT%H:%M}Z is not before --until {until:%Y-%m-%dT%H:%M}Z.")
    if not store.list_versions(args.name):
        raise TrainingError(f"Model {args.name} has no published versions in {store.uri}; nothing to monitor.")
    say(f"reading captures and labels of {args.name} from {store.uri}")
    report = build_report(store, args.name, since, until, progress=say)
    print(json.dumps(report, indent=2) if args.json else render_text(report))
    if args.write_html and report["versions"]:
        path = args.html or Path(f"monitor-{args.name}.html")
        path.write_text(render_html(report))
        say(f"HTML report: {path}")
    if args.save:
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        keys = store.write_report(
            args.name,
            stamp,
            {"report.json": json.dumps(report, indent=2).encode(), "report.html": render_html(report).encode()},
        )
        say("saved " + ", ".join(store.location(key) for key in keys))
    return exit_code(report)


LABEL_FILE_COLUMNS = ("id", "label")
LABELS_PER_FILE = 10_000


def command_labels(args: argparse.Namespace, store: ModelStore) -> int:
    """`labels upload FILE`: check every row first, so a bad file records nothing."""
    import csv

    alias = store.read_alias(args.name, args.alias)
    versions = store.list_versions(args.name)
    if alias is None and not versions:
        raise TrainingError(f"Model {args.name} has no published versions in {store.uri}; train one first.")
    manifest = Manifest.from_json(store.read_manifest(args.name, alias.version if alias else versions[0]))
    check = label_checker(manifest)
    try:
        with args.file.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise TrainingError(f"Cannot read {args.file}: {error}") from None
    if not rows or tuple(cell.strip() for cell in rows[0]) != LABEL_FILE_COLUMNS:
        raise TrainingError(f"{args.file} must start with the header row id,label.")
    labels = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{args.file} line {number}"
        if len(row) != 2:
            raise TrainingError(f"{where} has {len(row)} cells; expected 2 (id,label).")
        row_id, text = row[0].strip(), row[1].strip()
        try:
            check_row_id(row_id, f"{where}: the id")
            label = check(_label_value(text, manifest.is_classifier), f"{where}: the label")
        except LambdaForestError as error:
            raise TrainingError(error.message) from None
        labels.append(label_line(row_id, label, timestamp(datetime.now(UTC)), None))
    if not labels:
        raise TrainingError(f"{args.file} has no labels after its header row.")
    keys = [
        store.write_records(args.name, LABELS, labels[start : start + LABELS_PER_FILE])
        for start in range(0, len(labels), LABELS_PER_FILE)
    ]
    where = store.location(keys[0].rsplit("/", 1)[0])
    print(f"{args.name}: recorded {len(labels):,} label(s) in {len(keys)} file(s) under {where}")
    return 0


def _label_value(text: str, classify: bool) -> str | float:
    if classify:
        return text
    try:
        return float(text)
    except ValueError:
        return text  # refused by the checker, which says what was expected


def command_score(args: argparse.Namespace, store: ModelStore | None) -> int:
    from lambda_forest.batch import ScoreRequest
    from training.score import _single_file_output, describe, score_file

    request = ScoreRequest(
        input=args.input,
        output=args.output,
        model_name=args.name,
        model_version=args.version,
        model_alias=args.alias,
        input_format=args.input_format,
        output_format=args.format,
        id_column=args.id_column,
        delimiter=args.delimiter,
        encoding=args.encoding,
        chunk_bytes=max(int(args.chunk_mb * 2**20), 1),
        concurrency=args.concurrency,
    )
    if args.on == "aws":
        from training.score_aws import score_on_aws, state_machine_arn

        summary = score_on_aws(request, state_machine_arn(args.state_machine, args.stack), say)
        final_file = None
    else:
        assert store is not None
        summary = score_file(request, store, say)
        final_file = _single_file_output(args.output)
    for line in describe(summary, final_file):
        print(line)
    return 0 if not summary.failed_chunks else EXIT_ERROR


COMMANDS = {
    "train": command_train,
    "list": command_list,
    "show": command_show,
    "promote": command_promote,
    "rollback": command_rollback,
    "monitor": command_monitor,
    "labels": command_labels,
    "score": command_score,
}


def main(argv: Sequence[str] | None = None, prog: str = "python -m training") -> int:
    args = build_parser(prog).parse_args(argv)
    failed = EXIT_MONITOR_FAILED if args.command == "monitor" else EXIT_ERROR
    try:
        local = not (args.command == "score" and args.on == "aws")  # on AWS the stack's store is used
        return COMMANDS[args.command](args, open_store(args.store) if local else None)
    except LambdaForestError as error:
        say(f"error: {error}")
        if args.debug:
            traceback.print_exc()
        return failed
    except KeyboardInterrupt:
        say("interrupted; nothing was published after the last completed step")
        return 130
    except BrokenPipeError:  # the reader stopped early (`| head`): not worth a message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout again at exit
        return failed
    except Exception as error:  # an unexpected bug: one line by default, the traceback on request
        say(f"error: unexpected {type(error).__name__}: {error} (run with --debug for the traceback)")
        if args.debug:
            traceback.print_exc()
        return failed


def run() -> None:
    """The `lambda-forest` command (pyproject's [project.scripts])."""
    sys.exit(main(prog="lambda-forest"))
