"""The ``loopline`` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and sets
``handler``; register it in ``_SUBCOMMANDS``. Handlers return the process exit code.

``loopline drift REFERENCE CURRENT`` compares two Parquet/CSV files (paths or fsspec URIs such as
``s3://bucket/x.parquet``, ``file:///tmp/x.csv``). Exit codes: 0 done, 2 bad input, 3 drift detected with
``--fail-on-drift``.

``loopline store verify [--dataset D] [--fix]`` checks the partitions of the store (``LOOPLINE_STORE_ROOT`` or
``--root``) against their manifests and prints one line per partition. Exit codes: 0 nothing broken, 1 a
broken partition was found (with ``--fix`` it was quarantined: rebuild the day), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

EXIT_OK, EXIT_BROKEN, EXIT_INPUT, EXIT_DRIFT = 0, 1, 2, 3


def read_table(uri: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet or CSV file from a path or URI, choosing the reader by suffix (Parquet otherwise).

    Args:
        uri: Local path or fsspec URI; ``.csv``/``.csv.gz``/``.tsv`` are CSV, everything else Parquet.
        columns: Columns to read (Parquet reads only those).

    Returns:
        The frame.
    """
    import pandas as pd

    name = uri.lower().split("?", 1)[0]
    if name.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv")):
        sep = "\t" if name.endswith(".tsv") else ","
        return pd.read_csv(uri, sep=sep, usecols=columns)
    return pd.read_parquet(uri, columns=columns)


def _read(uri: str, columns: list[str] | None) -> pd.DataFrame:
    try:
        return read_table(uri, columns)
    except (KeyError, ValueError):
        if columns is None:
            raise
        # A requested column is absent: read everything so the engine can name what is missing.
        return read_table(uri, None)


def _add_drift(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "drift",
        help="compare a current dataset with a reference dataset (PSI, KL, JS per column)",
        description="Compare CURRENT against REFERENCE column by column and decide whether the data drifted.",
    )
    p.add_argument("reference", metavar="REFERENCE", help="reference (training) data: Parquet or CSV path/URI")
    p.add_argument("current", metavar="CURRENT", help="current (scoring) data: Parquet or CSV path/URI")
    p.add_argument("--binning", choices=("reference", "evidently"), default="reference",
                   help="reference: equal-width bins fixed on REFERENCE (default); evidently: Evidently 0.7 scores")
    p.add_argument("--columns", type=lambda s: [c.strip() for c in s.split(",") if c.strip()], default=None,
                   help="comma-separated columns (default: every REFERENCE column; one CURRENT lacks is "
                        "reported as not compared and counts as drifted)")
    p.add_argument("--format", choices=("table", "json"), default="table", dest="fmt")
    p.add_argument("--html", metavar="OUT.html",
                   help="also write the self-contained HTML report to this file (its folder must exist)")
    p.add_argument("--bins", type=int, default=10, help="equal-width bins per numeric column (reference mode)")
    p.add_argument("--psi-bands", default=None, metavar="LOW,HIGH",
                   help="PSI severity bands (default 0.1,0.2 or $LOOPLINE_PSI_BANDS)")
    p.add_argument("--categorical", default="", metavar="a,b",
                   help="columns to treat as categorical regardless of dtype")
    p.add_argument("--fail-on-drift", action="store_true", help=f"exit with {EXIT_DRIFT} when drift is detected")
    p.set_defaults(handler=_run_drift)


def _html_target(raw: str) -> Path:
    """Check ``--html`` before any data is read: a file path in an existing, writable folder.

    Raises:
        ValueError: The path is a folder, or its folder is missing or not writable; the message says which.
    """
    import os

    path = Path(raw)
    if raw.endswith(("/", os.sep)) or path.is_dir():
        raise ValueError(f"--html {raw} is a folder; give the report's file name, e.g. {path / 'drift.html'}")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"--html {raw}: {folder} is not an existing folder; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--html {raw}: the folder {folder} is not writable")
    return path


def _write_html(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename it, so no half-written page is left."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the page is meant to be shared like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_drift(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from loopline.drift import DriftConfig, DriftInputError, compare_frames

    html: Path | None = None
    if args.html is not None:
        try:
            html = _html_target(args.html)
        except ValueError as exc:
            print(f"loopline drift: {exc}", file=sys.stderr)
            return EXIT_INPUT
    bands: tuple[float, float] | None = None
    if args.psi_bands:
        try:
            low, high = (float(x) for x in args.psi_bands.split(","))
        except ValueError:
            print(f"loopline drift: --psi-bands must be two numbers like 0.1,0.25, got {args.psi_bands!r}",
                  file=sys.stderr)
            return EXIT_INPUT
        bands = (low, high)
    try:
        config = DriftConfig.from_env()
    except ValueError as exc:  # names the LOOPLINE_* variable
        print(f"loopline drift: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if bands is not None:
        try:
            config = replace(config, psi_bands=bands)
        except ValueError as exc:
            print(f"loopline drift: --psi-bands {args.psi_bands}: {exc}", file=sys.stderr)
            return EXIT_INPUT
    try:
        reference = _read(args.reference, args.columns)
        current = _read(args.current, args.columns)
        kinds = {c.strip(): "categorical" for c in args.categorical.split(",") if c.strip()}
        report = compare_frames(reference, current, binning=args.binning, columns=args.columns, config=config,
                                feature_kinds=kinds or None, n_bins=args.bins)
    except (DriftInputError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"loopline drift: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if html is not None:
        try:
            _write_html(html, report.to_html())
        except OSError as exc:
            print(f"loopline drift: could not write --html {args.html}: {exc}", file=sys.stderr)
            return EXIT_INPUT
    print(report.to_json() if args.fmt == "json" else report.to_table())
    return EXIT_DRIFT if (args.fail_on_drift and report.decision.drifted) else EXIT_OK


def _add_project(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("project", help="check, list or start model projects (project.yaml)",
                       description="Model projects: folders holding project.yaml, found in include/projects/ and "
                                   "in every folder of LOOPLINE_PROJECTS_PATH.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    check = verbs.add_parser("check", help="validate a project and print it with every default resolved")
    check.add_argument("project", metavar="PATH_OR_NAME")
    check.add_argument("--format", choices=("yaml", "json"), default="yaml", dest="fmt")
    check.set_defaults(handler=_run_project_check)
    ref = verbs.add_parser("reference", help="print the reference of every project key with its default (Markdown)")
    ref.set_defaults(handler=_run_project_reference)
    lst = verbs.add_parser("list", help="every project on the search path, or its error")
    lst.set_defaults(handler=_run_project_list)
    new = verbs.add_parser("new", help="write a starting project.yaml inferred from a sample file")
    new.add_argument("name", metavar="NAME")
    new.add_argument("--sample", required=True, metavar="FILE", help="one day of data (Parquet or CSV)")
    new.add_argument("--label", required=True, metavar="COLUMN")
    new.add_argument("--positive", metavar="VALUE", help="the positive label value (binary)")
    new.add_argument("--task", choices=("binary_classification", "regression"))
    new.add_argument("--keys", type=lambda s: [c.strip() for c in s.split(",") if c.strip()], metavar="a,b")
    new.add_argument("--start-date", metavar="YYYY-MM-DD")
    new.add_argument("--dir", type=Path, default=None,
                     help="folder to create NAME/project.yaml in (default: print it)")
    new.set_defaults(handler=_run_project_new)


def _run_project_check(args: argparse.Namespace) -> int:
    import json

    import yaml

    from loopline.project import ProjectError, load_project, resolve
    from loopline.project.loader import references

    try:
        project = load_project(args.project)
        for key, _ in references(project):
            resolve(project, key)
    except (ProjectError, LookupError) as exc:
        print(f"loopline project check: {exc}", file=sys.stderr)
        return EXIT_INPUT
    data = project.model_dump(mode="json")
    print(json.dumps(data, indent=2) if args.fmt == "json" else
          f"# {project.path}: valid\n" + yaml.safe_dump(data, sort_keys=False, width=110))
    return EXIT_OK


def _run_project_reference(args: argparse.Namespace) -> int:
    from loopline.project.reference import reference

    del args
    print(reference(), end="")
    return EXIT_OK


def _run_project_list(args: argparse.Namespace) -> int:
    from loopline.project import discover

    del args
    code = EXIT_OK
    for found in discover():
        if found.project is not None:
            print(f"{found.project.project:<20} {', '.join(found.project.models):<30} {found.path}")
        else:
            print(f"{'(error)':<20} {'':<30} {found.error}")
            code = EXIT_INPUT
    return code


def _run_project_new(args: argparse.Namespace) -> int:
    from loopline.project.new import new_project

    try:
        text = new_project(args.name, args.sample, args.label, positive=args.positive, task=args.task,
                           keys=args.keys, start_date=args.start_date)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"loopline project new: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.dir is None:
        print(text, end="")
        return EXIT_OK
    target = args.dir / args.name / "project.yaml"
    if target.exists():
        print(f"loopline project new: {target} exists; not overwritten", file=sys.stderr)
        return EXIT_INPUT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}; edit it, then run: loopline project check {target.parent}")
    return EXIT_OK


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a project's whole loop in this process, without Airflow",
                       description="Features day by day, the first champion, scoring, drift, retraining on drift "
                                   "and on the retrain cron, promotion: against the store and MLflow under "
                                   "LOOPLINE_HOME (or LOOPLINE_STORE_ROOT / LOOPLINE_MLFLOW_TRACKING_URI).")
    p.add_argument("project", metavar="PROJECT", help="project name or folder")
    p.add_argument("--start", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--end", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--summary", type=Path, metavar="FILE", help="also write the summary as JSON")
    p.add_argument("--workers", type=int, metavar="N",
                   help="processes for the models, each taking the days in order (default: one per model, at most "
                        "one per core; 1 runs everything in this process)")
    p.set_defaults(handler=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    import datetime as dt
    import logging

    from loopline.project import ProjectError, load_project
    from loopline.runner import run_project, write_summary
    from loopline.settings import Settings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()  # a SettingsError names the LOOPLINE_* variable
        project = load_project(args.project)
        start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    except (ProjectError, LookupError, ValueError) as exc:
        print(f"loopline run: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if end < start:
        print(f"loopline run: --end {end} is before --start {start}", file=sys.stderr)
        return EXIT_INPUT
    if args.workers is not None and args.workers < 1:
        print(f"loopline run: --workers {args.workers}: write 1 or more", file=sys.stderr)
        return EXIT_INPUT
    summary = run_project(project, start, end, settings=settings, workers=args.workers)
    print(summary.to_table())
    if summary.days_empty and not summary.days_featured and not summary.days_failed:
        # A wrong `uri` reads as "no data that day", so say it once rather than leave 0 days looking like success.
        print(f"loopline run: no source had data on any day of {start}..{end}; check the sources' uri "
              f"(`loopline project check {project.project}` prints it resolved)", file=sys.stderr)
    if args.summary:
        write_summary(summary, args.summary)
    return EXIT_OK


def _add_store(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("store", help="inspect and repair the partition store",
                       description="Inspect and repair the partition store (LOOPLINE_STORE_ROOT).")
    store_sub = p.add_subparsers(dest="store_command", required=True, metavar="STORE_COMMAND")
    v = store_sub.add_parser(
        "verify",
        help="check every partition against its manifest (row count, schema, content hash)",
        description="Check each committed partition against its manifest and list the leftovers of killed writes. "
                    f"Exit {EXIT_OK} when nothing is broken, {EXIT_BROKEN} when a partition is broken (even once "
                    f"--fix quarantined it: rebuild the day), {EXIT_INPUT} on bad input.",
    )
    v.add_argument("--dataset", help="only this dataset, all its versions (e.g. features, shop/features)")
    v.add_argument("--fix", action="store_true",
                   help="quarantine broken partitions to <root>/_quarantine/ (the day then reads as never written, "
                        "so its next build writes it again), delete leftovers older than the grace period, move "
                        "back a day lost by a killed re-write of an earlier release")
    v.add_argument("--quick", action="store_true", help="skip the content hash (manifest, files, footers only)")
    v.add_argument("--grace-minutes", type=float, default=60.0,
                   help="only leftovers older than this are deleted, so a running writer's files stay (default 60)")
    v.add_argument("--root", help="store root URI (default: LOOPLINE_STORE_ROOT)")
    v.set_defaults(handler=_run_store_verify)


def _run_store_verify(args: argparse.Namespace) -> int:
    import datetime as dt

    from loopline.settings import Settings, SettingsError
    from loopline.steps import store_for
    from loopline.store import StoreAccessError

    try:
        settings = Settings.from_env(**({"store_root": args.root} if args.root else {}))
        store = store_for(settings)
        report = store.verify(args.dataset, content=not args.quick, fix=args.fix,
                              grace=dt.timedelta(minutes=args.grace_minutes))
    except (SettingsError, StoreAccessError, ValueError) as exc:
        print(f"loopline store verify: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if args.dataset and not report.partitions:
        print(f"loopline store verify: no partitions of dataset {args.dataset!r} under {store.root}", file=sys.stderr)
        return EXIT_INPUT
    for check in report.partitions:
        status = "BROKEN" if check.problems else ("ok" if check.committed else "leftover")
        detail = (f"{check.rows} rows" if check.rows is not None
                  else "committed" if check.committed else "not committed")
        print(f"{status:<8} {check.uri}  ({detail})")
        for problem in check.problems:
            print(f"  {problem.file}: {problem.what}")
        for name in check.leftovers:
            print(f"  leftover of a killed write: {name}")
        for action in check.fixed:
            print(f"  fixed: {action}")
    for uri in report.side_leftovers:
        print(f"leftover {uri}{'  (removed)' if uri in report.side_removed else ''}")
    broken = [c for c in report.partitions if c.problems]
    committed = sum(c.committed for c in report.partitions)
    print(f"{committed} partition(s) checked under {store.root}: {len(broken)} broken"
          + ("" if not broken or args.fix else f"; run `loopline store verify{_dataset_flag(args)} --fix`"))
    return EXIT_BROKEN if broken else EXIT_OK


def _dataset_flag(args: argparse.Namespace) -> str:
    return f" --dataset {args.dataset}" if args.dataset else ""


_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_drift, _add_project, _add_run, _add_store,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``loopline`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="loopline", description="Loopline continuous-training tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code.
    """
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BrokenPipeError:  # output piped into `head`: not an error of ours
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
