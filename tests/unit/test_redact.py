"""mask_url: the one helper that keeps passwords out of printed and logged URLs."""

from __future__ import annotations

import pytest
from loopline.redact import mask_url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql+psycopg2://airflow:s3cret@postgres:5432/airflow", "postgresql+psycopg2://airflow:***@postgres:5432/airflow"),
        ("db+postgresql://airflow:pw@postgres/airflow", "db+postgresql://airflow:***@postgres/airflow"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://u:p@ss:w@rd@h:5432/db", "postgresql://u:***@h:5432/db"),  # '@' and ':' in the password
        ("postgresql://u:a/b?c@h/db", "postgresql://u:***@h/db"),  # '/' and '?' unescaped in the password
        ("postgresql://u:pw@h/db?sslmode=require&application_name=x",
         "postgresql://u:***@h/db?sslmode=require&application_name=x"),
        ("postgresql://h/db?user=u&password=s3&sslmode=require", "postgresql://h/db?user=u&password=***&sslmode=require"),
        ("redis://h:6379/0?password=abc", "redis://h:6379/0?password=***"),
        ("https://ann:tok@mlflow.example.com/prefix#frag", "https://ann:***@mlflow.example.com/prefix#frag"),
        ("postgresql://u@h/db?options=a@b", "postgresql://u@h/db?options=a@b"),  # an '@' in the query is not user info
        # Nothing to hide: unchanged.
        ("postgresql+psycopg2://postgres@127.0.0.1:5432/loopline", "postgresql+psycopg2://postgres@127.0.0.1:5432/loopline"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/x/airflow.db", "sqlite:////tmp/x/airflow.db"),
        ("file:///tmp/store", "file:///tmp/store"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_an_ambiguous_url_is_masked_too_much_rather_than_too_little() -> None:
    # No "@" before the query: the one after it may end an unescaped password, so what follows a ":" is hidden.
    assert mask_url("postgresql://h/db?options=a:b@c") == "postgresql://h/db?options=a:***@c"
