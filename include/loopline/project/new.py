"""``loopline project new``: a starting ``project.yaml`` inferred from a sample file, for the user to edit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.project.spec import NAME_PATTERN

if TYPE_CHECKING:
    import pandas as pd

# A column with at most this many distinct values (and a non-float dtype) is inferred categorical.
MAX_CATEGORIES = 50


def infer_kind(values: pd.Series) -> str | None:
    """``numeric``, ``categorical``, or None for a column that cannot be a feature (dates, free text)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values):
        return "categorical"
    if pd.api.types.is_numeric_dtype(values):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(values):
        return None
    if values.nunique(dropna=True) <= MAX_CATEGORIES or values.nunique(dropna=True) <= 0.05 * max(len(values), 1):
        return "categorical"
    return None


MAX_LABEL_VALUES = 20  # more distinct labels than this in a sample: not a list worth writing down


def new_project(name: str, sample: str, label: str, *, positive: str | None = None, task: str | None = None,
                keys: list[str] | None = None, start_date: str | None = None) -> str:
    """The text of a starting ``project.yaml`` for ``sample`` (a Parquet or CSV file of one day).

    The label column and any key columns are kept out of the features; a key defaults to the first column
    whose values are all distinct; the task defaults to binary when the label has two values.
    """
    import datetime as dt

    import yaml

    from loopline.cli import read_table

    if not re.match(NAME_PATTERN, name):
        raise ValueError(f"{name!r} is not a valid project name: use lower-case letters, digits and '_'")
    try:
        first = dt.date.fromisoformat(start_date) if start_date else None
    except ValueError as exc:
        raise ValueError(f"start date {start_date!r} is not a day YYYY-MM-DD ({exc})") from None
    frame = read_table(sample)
    if label not in frame.columns:
        raise ValueError(f"label column {label!r} is not in {sample} (columns: {list(frame.columns)})")
    labels = frame[label].dropna()
    if task is None:
        task = "binary_classification" if labels.nunique() == 2 else "regression"
    if task == "binary_classification" and positive is None:
        values = sorted(map(str, labels.unique()))
        if len(values) != 2:
            raise ValueError(f"label {label!r} has {len(values)} values; give --positive VALUE")
        positive = values[-1]
    if keys is None:
        keys = [c for c in frame.columns if c != label and frame[c].notna().all() and frame[c].is_unique][:1]
        if not keys:
            raise ValueError("no column has distinct values on every row; give --keys a,b")
    columns: list[dict[str, Any]] = []
    skipped: list[str] = []
    for col in frame.columns:
        if col == label or col in keys:
            continue
        kind = infer_kind(frame[col])
        if kind is None:
            skipped.append(str(col))
            continue
        entry: dict[str, Any] = {"name": str(col), "kind": kind}
        columns.append(entry)
    # Not Path.as_uri(): it percent-encodes '=' (ds=2024-01-01 -> ds%3D...), and fsspec reads file:// URIs
    # verbatim, so every day of such a source would read as missing.
    uri = "file://" + Path(sample).resolve().as_posix() if "://" not in sample else sample
    day = _file_day(uri)
    uri = uri[:day.start()] + "{ds}" + uri[day.end():] if day else uri.rsplit("/", 1)[0] + "/ds={ds}/" + \
        uri.rsplit("/", 1)[1]
    doc: dict[str, Any] = {
        "project": name,
        # The sample's own day when its name holds one: the data starts there, whatever today is.
        "start_date": first or (dt.date.fromisoformat(day.group(0)) if day else dt.date.today()),
        "sources": {"main": {"uri": uri, "format": "csv" if sample.lower().endswith((".csv", ".csv.gz")) else
                             "parquet"}},
        "features": {"version": 1, "keys": keys, "columns": columns},
        "models": {_model_name(label): {"task": task, "label": {"column": label, **(
            _binary_label(labels, positive) if task == "binary_classification" else {})}}},
    }
    head = (f"# Written by `loopline project new` from {sample}. Edit it, then `loopline project check {name}`.\n"
            "# sources.main.uri must name each day's file with {ds} (YYYY-MM-DD), e.g. .../ds={ds}/part.parquet.\n")
    if skipped:
        head += f"# Not taken as features (dates or free text): {', '.join(skipped)}\n"
    # Sources in block style, one key a line: the uri is what the user checks first, and a long path must not
    # fold a flow mapping over two lines. Features and models keep one line per column.
    return head + "".join(yaml.safe_dump({key: value}, sort_keys=False, width=110,
                                         default_flow_style=None if key in ("features", "models") else False)
                          for key, value in doc.items())


def _file_day(uri: str) -> re.Match[str] | None:
    """The last real date YYYY-MM-DD in ``uri``: the day of the file (a folder above may hold another date)."""
    import datetime as dt

    for match in reversed(list(re.finditer(r"\d{4}-\d{2}-\d{2}", uri))):
        try:
            dt.date.fromisoformat(match.group(0))
        except ValueError:
            continue
        return match
    return None


def _binary_label(labels: Any, positive: Any) -> dict[str, Any]:
    """``positive`` and, when the sample shows a short list of them, every label ``values`` (so a day holding
    another value fails validation instead of counting as negative)."""
    out: dict[str, Any] = {"positive": _plain(positive)}
    seen = sorted({_plain(str(v)) for v in labels.unique()} | {out["positive"]}, key=str)
    if len(seen) <= MAX_LABEL_VALUES:
        out["values"] = seen
    return out


def _model_name(label: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]", "_", label.lower()).strip("_") or "model"
    return cleaned if cleaned[0].isalpha() else f"m_{cleaned}"


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                continue
    return value
