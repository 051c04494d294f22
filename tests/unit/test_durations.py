"""Durations as the inventory writes them (mtls_deploy/durations.py) and the schema type."""

import datetime as dt

import pytest

from mtls_deploy import schema
from mtls_deploy.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    "text, seconds",
    [("365d", 365 * 86400), ("12h", 43200), ("10m", 600), ("90s", 90), ("2w", 14 * 86400),
     ("10y", 3650 * 86400), ("1s", 1)],
)  # fmt: skip
def test_a_duration_is_a_number_and_a_unit(text, seconds):
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "value, words",
    [("180", "add a unit"), (180, "add a unit"), ("0d", "out of range"), ("101y", "out of range"),
     ("1.5d", "is not a duration"), ("-3d", "is not a duration"), ("3 d", "is not a duration"),
     ("3D", "is not a duration"), ("", "is not a duration"), (True, "must be a duration"),
     (None, "must be a duration"), ("3d; rm -rf /", "is not a duration")],
)  # fmt: skip
def test_anything_else_is_refused_in_words(value, words):
    with pytest.raises(ValueError, match=words):
        parse_duration(value)


@pytest.mark.parametrize(
    "delta, text",
    [(dt.timedelta(days=365), "365d"), (dt.timedelta(hours=36), "36h"),
     (dt.timedelta(minutes=2), "2m"), (dt.timedelta(seconds=90), "90s")],
)  # fmt: skip
def test_format_gives_back_the_shortest_exact_text(delta, text):
    assert format_duration(delta) == text
    assert parse_duration(text) == delta


def test_the_schema_type_checks_a_duration_like_any_variable():
    spec = {"type": "duration"}
    assert schema.check_value("2m", spec) == "2m"
    with pytest.raises(ValueError, match=r"'2 minutes' is not a duration such as 365d"):
        schema.check_value("2 minutes", spec)
    schema.validate_spec("crl_lifetime", spec, "x.yml")  # a known type
    assert schema.describe(spec) == "a duration such as 365d, 12h, 10m or 90s"
