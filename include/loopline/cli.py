"""The ``loopline`` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments and sets
``handler``; register it in ``_SUBCOMMANDS``. Handlers return the process exit code.

``loopline drift REFERENCE CURRENT`` compares two Parquet/CSV files (paths or fsspec URIs such as
``s3://bucket/x.parquet``, ``file:///tmp/x.csv``). Exit codes: 0 done, 2 bad input, 3 drift detected with
``--fail-on-drift``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

EXIT_OK, EXIT_INPUT, EXIT_DRIFT = 0, 2, 3


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


_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (_add_drift,)


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
