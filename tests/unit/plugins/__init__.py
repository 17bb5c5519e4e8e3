"""Unit tests of the loopline_airflow package, one file per module."""
