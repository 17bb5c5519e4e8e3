"""Write a folder of daily Parquet files of web-shop orders: the sample data of the README's walk-through.

``python include/examples/shop_orders.py data/orders`` writes ``data/orders/ds=YYYY-MM-DD/orders.parquet`` for
45 days from 2024-01-01, 300 orders a day. Each order has an id, a timestamp, seven features and the label
``returned`` (``yes``/``no``). Returns really depend on the features (fashion and shoes, many items, big
discounts, the marketplace channel, first orders and slow deliveries are returned more often), so a model has
something to learn. From ``--sale-from`` (default 2024-02-01) a sale runs: bigger discounts, more marketplace
orders and new customers, fuller baskets and slower deliveries, so the drift check has something to find.

The output depends only on the arguments (one seeded generator per day), never on the clock.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

CHANNELS = ["web", "app", "marketplace"]
COUNTRIES = ["DE", "FR", "NL", "BE", "AT"]
CATEGORIES = ["fashion", "shoes", "electronics", "home", "beauty"]
# What the category adds to the log-odds of a return: clothes and shoes are tried on and sent back.
CATEGORY_RETURN = {"fashion": 1.4, "shoes": 1.1, "electronics": 0.0, "home": -0.3, "beauty": -0.8}
CATEGORY_PRICE = {"fashion": 45.0, "shoes": 70.0, "electronics": 120.0, "home": 35.0, "beauty": 20.0}


def day_orders(day: dt.date, rows: int, *, sale: bool, seed: int = 0) -> pd.DataFrame:
    """One day of orders; ``sale`` switches on the shifted behaviour of the last weeks."""
    rng = np.random.default_rng([seed, day.toordinal()])
    channel = rng.choice(CHANNELS, rows, p=[0.3, 0.45, 0.25] if sale else [0.5, 0.35, 0.15])
    country = rng.choice(COUNTRIES, rows, p=[0.4, 0.25, 0.15, 0.1, 0.1])
    category = rng.choice(CATEGORIES, rows, p=[0.35, 0.15, 0.15, 0.2, 0.15])
    items = 1 + rng.poisson(1.8 if sale else 1.0, rows)
    discount = rng.choice([0, 10, 20, 30, 50], rows,
                          p=[0.1, 0.15, 0.25, 0.3, 0.2] if sale else [0.6, 0.2, 0.12, 0.06, 0.02])
    customer_orders = rng.geometric(0.35 if sale else 0.2, rows) - 1  # 0: the customer's first order
    delivery_days = 1 + rng.poisson(3.0 if sale else 1.5, rows)
    price = np.array([CATEGORY_PRICE[c] for c in category])
    basket = price * items * rng.lognormal(0.0, 0.35, rows) * (1 - discount / 100)
    logit = (-2.6 + np.array([CATEGORY_RETURN[c] for c in category]) + 0.35 * (items - 1) + 0.025 * discount
             + 0.8 * (channel == "marketplace") + 0.9 * (customer_orders == 0) + 0.25 * (delivery_days - 2))
    returned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    seconds = np.sort(rng.integers(0, 86_400, rows))
    midnight = pd.Timestamp(day)
    return pd.DataFrame({
        "order_id": np.arange(rows, dtype="int64") + (day.toordinal() - dt.date(2020, 1, 1).toordinal()) * 100_000,
        "ordered_at": midnight + pd.to_timedelta(seconds, unit="s"),
        "channel": channel,
        "country": country,
        "category": category,
        "items": items.astype("int64"),
        "basket_value": basket.round(2),
        "discount_pct": discount.astype("int64"),
        "customer_orders": customer_orders.astype("int64"),
        "delivery_days": delivery_days.astype("int64"),
        "returned": np.where(returned, "yes", "no"),
    })


def write_orders(out: Path, start: dt.date, days: int, rows: int, sale_from: dt.date, seed: int = 0) -> list[Path]:
    """Write ``days`` daily files under ``out``; returns their paths."""
    paths = []
    for i in range(days):
        day = start + dt.timedelta(days=i)
        path = out / f"ds={day.isoformat()}" / "orders.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        day_orders(day, rows, sale=day >= sale_from, seed=seed).to_parquet(path, index=False)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write ds=YYYY-MM-DD/orders.parquet into")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1), metavar="YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--rows", type=int, default=300, help="orders a day")
    parser.add_argument("--sale-from", type=dt.date.fromisoformat, default=dt.date(2024, 2, 1),
                        metavar="YYYY-MM-DD", help="first day of the shifted behaviour")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = write_orders(args.out, args.start, args.days, args.rows, args.sale_from, args.seed)
    span = f"{paths[0]} .. {paths[-1]}" if len(paths) > 1 else str(paths[0])
    print(f"wrote {len(paths)} day(s) of {args.rows} orders: {span}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
