"""The reference profile: bins fixed once on the training data, stored as small versioned JSON.

Training logs ``ReferenceProfile.fit(train_df).to_json()`` with each model version (MLflow artifact
``drift/reference_profile.json``); a day's drift check loads it with :meth:`ReferenceProfile.from_json`
and bins only that day's rows (:func:`loopline.drift.compare`), never re-reading the training set.

JSON layout (``schema_version`` 1)::

    {"schema_version": 1, "kind": "loopline.drift.reference_profile", "n_rows": 1000, "n_bins": 10,
     "validation_metrics": {"roc_auc": 0.81},
     "features": {
        "basket":    {"kind": "numeric", "dtype": "float64", "lo": -20.0, "hi": 900.0, "n_inner": 10,
                      "counts": [0, 812, ..., 0], "missing": 12, "inf": 0, "total": 1000},
        "channel":   {"kind": "categorical", "dtype": "str", "categories": ["web", "app", ...],
                      "counts": [300, 250, ..., 0], "missing": 0, "inf": 0, "total": 1000}}}

Numeric ``counts`` are ``[underflow, inner_1 … inner_n, overflow]`` (see :mod:`loopline.drift.binning`);
``lo``/``hi`` are robust bounds of the training values (:func:`loopline.drift.binning.robust_bounds`), so
far-out training values are counted in the under/overflow bins. Profiles written before the robust bounds
have the same layout with ``lo``/``hi`` at the training min/max: they load and are used unchanged (a feature
whose reference then crowds into one inner bin gets a note asking for a re-fit); an entry whose counts do
not match the layout is rejected with a message naming the feature.
categorical ``counts`` are one per category followed by the *unseen* bucket (categories beyond
``max_categories`` at fit time fall into it too). Missing values are counted apart and compared as one more
bin, so a rise of NaNs moves PSI instead of vanishing.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from loopline.drift.binning import (
    CATEGORICAL,
    NUMERIC,
    JsonScalar,
    count_categories,
    count_numeric,
    numeric_edges,
    numeric_values,
    resolve_kind,
    to_json_scalar,
)
from loopline.drift.config import DriftInputError

SCHEMA_VERSION = 1
PROFILE_KIND = "loopline.drift.reference_profile"
UNSEEN_LABEL = "(unseen)"
MISSING_LABEL = "(missing)"


@dataclass(frozen=True)
class Binned:
    """One sample binned over a feature's bins, missing last.

    Attributes:
        counts: Count per bin (the missing bin is the last one).
        missing: Missing (NaN/None) count.
        inf: ±inf count (inside the under/overflow bins).
        outside: Values outside the reference range (numeric) or in the unseen bucket (categorical).
        total: Rows.
    """

    counts: npt.NDArray[np.int64]
    missing: int
    inf: int
    outside: int
    total: int

    def proportions(self) -> npt.NDArray[np.float64]:
        """Relative frequencies (all zeros for an empty sample)."""
        if self.total == 0:
            return np.zeros(self.counts.size, dtype=np.float64)
        return self.counts / float(self.total)


@dataclass
class FeatureProfile:
    """Bins of one feature and the training counts over them.

    Attributes:
        name: Column name.
        kind: ``"numeric"`` or ``"categorical"``.
        dtype: Training dtype, informational.
        counts: Training counts per bin, without the missing bin (see the module docstring for the layout).
        missing: Training missing count.
        inf: Training ±inf count.
        total: Training rows.
        lo: Numeric only: lower edge of the first inner bin.
        hi: Numeric only: upper edge of the last inner bin (inclusive).
        n_inner: Numeric only: number of inner bins.
        categories: Categorical only: known categories in bin order.
    """

    name: str
    kind: str
    dtype: str
    counts: list[int]
    missing: int
    inf: int
    total: int
    lo: float | None = None
    hi: float | None = None
    n_inner: int | None = None
    categories: list[JsonScalar] | None = None

    @property
    def edges(self) -> list[float] | None:
        """Inner bin edges (numeric), ``n_inner + 1`` values; None for a categorical feature."""
        if self.kind != NUMERIC or self.lo is None or self.hi is None or self.n_inner is None:
            return None
        if math.isfinite(self.hi - self.lo):
            return [float(v) for v in np.linspace(self.lo, self.hi, self.n_inner + 1)]
        # bounds near ±1e308 (a profile fitted before the robust bounds): the width overflows, halves do not
        return [float(v) * 2 for v in np.linspace(self.lo / 2, self.hi / 2, self.n_inner + 1)]

    @property
    def labels(self) -> list[str]:
        """Human labels of every compared bin, missing last."""
        if self.kind == NUMERIC:
            edges = self.edges or []
            if self.lo == self.hi:
                inner = [f"= {_fmt(edges[0])}"]
            else:
                inner = [f"[{_fmt(a)}, {_fmt(b)})" for a, b in itertools.pairwise(edges)]
                inner[-1] = inner[-1][:-1] + "]"
            return [f"< {_fmt(edges[0])}", *inner, f"> {_fmt(edges[-1])}", MISSING_LABEL]
        return [str(c) for c in self.categories or []] + [UNSEEN_LABEL, MISSING_LABEL]

    def reference(self) -> Binned:
        """The training sample as :class:`Binned`."""
        counts = np.asarray([*self.counts, self.missing], dtype=np.int64)
        outside = counts[0] + counts[-2] if self.kind == NUMERIC else counts[-2]
        return Binned(counts, self.missing, self.inf, int(outside), self.total)

    def bin(self, series: pd.Series) -> Binned:
        """Bin a current sample over this feature's bins (vectorised, one pass over the column).

        Args:
            series: The current column.

        Returns:
            The binned sample.
        """
        if self.kind == NUMERIC:
            assert self.lo is not None and self.hi is not None and self.n_inner is not None
            nc = count_numeric(numeric_values(series, self.name), self.lo, self.hi, self.n_inner)
            counts = np.append(nc.bins, nc.missing)
            return Binned(counts, nc.missing, nc.inf, int(nc.bins[0] + nc.bins[-1]), nc.total)
        cc = count_categories(series, self.categories or [])
        counts = np.concatenate([cc.bins, [cc.unseen, cc.missing]]).astype(np.int64)
        return Binned(counts, cc.missing, 0, cc.unseen, cc.total)

    @classmethod
    def fit(cls, series: pd.Series, name: str, kind: str, n_bins: int, max_categories: int) -> FeatureProfile:
        """Fix the bins of one feature on its training values.

        Args:
            series: Training column.
            name: Column name.
            kind: ``"numeric"`` or ``"categorical"``.
            n_bins: Equal-width inner bins for a numeric feature.
            max_categories: Most frequent categories kept; the rest share the unseen bucket.

        Returns:
            The feature profile.
        """
        dtype = str(series.dtype)
        if kind == NUMERIC:
            values = numeric_values(series, name)
            lo, hi, n = numeric_edges(values, n_bins)
            nc = count_numeric(values, lo, hi, n)
            return cls(name, kind, dtype, nc.bins.tolist(), nc.missing, nc.inf, nc.total, lo, hi, n)
        counts = series.value_counts(dropna=True)
        if len(counts):
            order = sorted(
                range(len(counts)), key=lambda i: (-int(counts.iloc[i]), str(counts.index[i]))
            )
            counts = counts.iloc[order]
        kept = counts.iloc[:max_categories]
        categories = [to_json_scalar(v, name) for v in kept.index]
        rest = int(counts.iloc[max_categories:].sum())
        missing = int(series.isna().sum())
        return cls(
            name, CATEGORICAL, dtype, [int(c) for c in kept.to_numpy()] + [rest], missing, 0, len(series),
            categories=categories,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the per-feature entry of the profile JSON)."""
        out: dict[str, Any] = {
            "kind": self.kind, "dtype": self.dtype, "counts": self.counts,
            "missing": self.missing, "inf": self.inf, "total": self.total,
        }
        if self.kind == NUMERIC:
            out.update(lo=self.lo, hi=self.hi, n_inner=self.n_inner)
        else:
            out["categories"] = self.categories
        return out

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> FeatureProfile:
        """Inverse of :meth:`to_dict`, with checks that name the feature when the entry is malformed."""
        try:
            kind = data["kind"]
            profile = cls(
                name=name, kind=kind, dtype=str(data.get("dtype", "")),
                counts=[int(c) for c in data["counts"]], missing=int(data["missing"]),
                inf=int(data.get("inf", 0)), total=int(data["total"]),
                lo=None if data.get("lo") is None else float(data["lo"]),
                hi=None if data.get("hi") is None else float(data["hi"]),
                n_inner=None if data.get("n_inner") is None else int(data["n_inner"]),
                categories=data.get("categories"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftInputError(f"reference profile entry for feature {name!r} is malformed: {exc}") from exc
        if kind == NUMERIC:
            _check_numeric_entry(name, profile)
        elif kind != CATEGORICAL or len(profile.counts) != len(profile.categories or []) + 1:
            raise DriftInputError(
                f"reference profile entry for feature {name!r} is inconsistent (kind {kind!r}, "
                f"{len(profile.counts)} counts for {len(profile.categories or [])} categories + unseen); "
                "re-fit the profile."
            )
        return profile


@dataclass
class ReferenceProfile:
    """Bins and training counts of every monitored feature, stored with the model version.

    Attributes:
        features: Per-feature profiles, in column order.
        n_rows: Training rows.
        n_bins: Requested equal-width bins for numeric features.
        validation_metrics: The model's training-time validation metrics (e.g. ``{"roc_auc": 0.81}``),
            used for concept drift by :func:`loopline.drift.performance_decay`.
        schema_version: Version of the JSON layout.
    """

    features: dict[str, FeatureProfile]
    n_rows: int
    n_bins: int = 10
    validation_metrics: dict[str, float] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def fit(
        cls,
        df: pd.DataFrame,
        columns: list[str] | None = None,
        *,
        n_bins: int = 10,
        feature_kinds: dict[str, str] | None = None,
        max_categories: int = 100,
        validation_metrics: dict[str, float] | None = None,
    ) -> ReferenceProfile:
        """Fix bins on the training data: equal-width numeric bins, known categories plus an unseen bucket.

        Args:
            df: Training data (the prediction ``score`` column can be profiled like any numeric column).
            columns: Columns to profile; all columns when None (datetime columns are then skipped).
            n_bins: Equal-width inner bins per numeric feature (under/overflow bins come on top).
            feature_kinds: ``{"col": "numeric" | "categorical"}`` overrides; inferred from the dtype otherwise
                (bool, string, category and object columns are categorical).
            max_categories: Most frequent categories kept per categorical feature.
            validation_metrics: Training-time validation metrics to store with the profile.

        Returns:
            The profile.

        Raises:
            DriftInputError: A requested column is missing or has an unsupported dtype.
        """
        selected = _select_columns(df, columns, "training data")
        features: dict[str, FeatureProfile] = {}
        for name in selected:
            kind = resolve_kind(df[name], name, feature_kinds)
            features[name] = FeatureProfile.fit(df[name], name, kind, n_bins, max_categories)
        return cls(
            features=features, n_rows=len(df), n_bins=n_bins,
            validation_metrics={k: float(v) for k, v in (validation_metrics or {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the profile."""
        return {
            "schema_version": self.schema_version,
            "kind": PROFILE_KIND,
            "n_rows": self.n_rows,
            "n_bins": self.n_bins,
            "validation_metrics": self.validation_metrics,
            "features": {name: f.to_dict() for name, f in self.features.items()},
        }

    def to_json(self) -> str:
        """Serialise to JSON (floats round-trip exactly)."""
        return json.dumps(self.to_dict(), allow_nan=False, indent=1)

    @classmethod
    def from_json(cls, s: str | bytes) -> ReferenceProfile:
        """Load a profile written by :meth:`to_json`.

        Raises:
            DriftInputError: The text is not a Loopline reference profile or has a newer schema version.
        """
        try:
            data = json.loads(s)
        except json.JSONDecodeError as exc:
            raise DriftInputError(f"reference profile is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("kind") != PROFILE_KIND:
            raise DriftInputError("this JSON is not a Loopline reference profile (missing kind marker)")
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise DriftInputError(
                f"reference profile schema_version {version!r} is not supported by this Loopline "
                f"(reads up to {SCHEMA_VERSION}); upgrade loopline or re-fit the profile."
            )
        features = {name: FeatureProfile.from_dict(name, f) for name, f in data["features"].items()}
        return cls(
            features=features, n_rows=int(data["n_rows"]), n_bins=int(data.get("n_bins", 10)),
            validation_metrics={k: float(v) for k, v in data.get("validation_metrics", {}).items()},
            schema_version=version,
        )


def _check_numeric_entry(name: str, profile: FeatureProfile) -> None:
    """Reject a numeric entry whose bins cannot be used, saying which part is wrong."""
    lo, hi, n = profile.lo, profile.hi, profile.n_inner
    if lo is None or hi is None or n is None or not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or n < 1:
        raise DriftInputError(
            f"reference profile entry for feature {name!r} has unusable bins (lo={lo}, hi={hi}, n_inner={n}; "
            "need finite lo ≤ hi and n_inner ≥ 1); re-fit the profile."
        )
    if len(profile.counts) != n + 2:
        raise DriftInputError(
            f"reference profile entry for feature {name!r} has {len(profile.counts)} counts for {n} inner bins; "
            f"the layout is [underflow, {n} inner bins, overflow] = {n + 2} counts. Profiles without the "
            "under/overflow counts cannot be compared: re-fit the profile from the model version's training data."
        )


def _select_columns(df: pd.DataFrame, columns: list[str] | None, where: str) -> list[str]:
    if columns is None:
        return [str(c) for c in df.columns if not _is_temporal(df[c])]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DriftInputError(f"columns {missing} are not in the {where}; available: {list(df.columns)}")
    return list(columns)


def _is_temporal(series: pd.Series) -> bool:
    dtype = series.dtype
    return bool(
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
    )


def _fmt(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"
