"""The cast table, row by row: every rule's SQL runs in DuckDB, valid values become what the
target column takes, invalid ones are caught, and a pair with no rule is refused by name."""

from __future__ import annotations

import duckdb
import pytest

from alkemio_assets.core.casts import CAST_RULES, OVERRIDES, CastRule, NoCastRule, rule_for

PARAMS = {"n": 10, "lo": -32768, "hi": 32767, "p": 3, "s": 1, "p_int": 2}

# rule name -> (DuckDB input type, valid input, value produced, invalid input or None)
EXAMPLES: dict[str, tuple[str, str, object, str | None]] = {
    "flag": ("HUGEINT", "1", True, "2"),
    "integer": ("HUGEINT", "32767", 32767, "32768"),
    "integer_numeric": ("HUGEINT", "18446744073709551615", 18446744073709551615, None),
    "decimal": ("DECIMAL(3,1)", "99.9", __import__("decimal").Decimal("99.9"), None),
    "decimal_text": ("VARCHAR", "12.5", "12.5", "123.5"),
    "float": ("DOUBLE", "0.1", 0.1, None),
    "timestamp": ("VARCHAR", "1969-07-20 20:17:40.000001", "1969-07-20 20:17:40.000001", "0000-00-00 00:00:00"),
    "timestamptz": ("VARCHAR", "2040-02-29 23:59:59.999999", "2040-02-29 23:59:59.999999+00", "2021-02-30 00:00:00"),
    "date": ("VARCHAR", "1000-01-01", "1000-01-01", "0000-00-00"),
    "time": ("VARCHAR", "23:59:59", "23:59:59", "838:59:59"),
    "year": ("INTEGER", "2024", 2024, None),
    "text": ("VARCHAR", "ééééééééé🚀", "ééééééééé🚀", "ééééééééééé"),
    "uuid": (
        "VARCHAR",
        "0B4E9F3A-1D2C-4E5F-8A9B-0C1D2E3F4A5B",
        "0b4e9f3a-1d2c-4e5f-8a9b-0c1d2e3f4a5b",
        "{0b4e9f3a-1d2c-4e5f-8a9b-0c1d2e3f4a5b}",
    ),
    "json": ("VARCHAR", '{"a": [1, "\\n"]}', '{"a": [1, "\\n"]}', "{a: 1}"),
    "jsonb": ("VARCHAR", '"x"', '"x"', '{"nul": "\\u0000"}'),
    "enum": ("VARCHAR", "read", "read", None),
    "bytea": ("VARCHAR", "\\x00ff", "\\x00ff", "\\x0"),
    "base64": ("VARCHAR", "\\x00ff41", "AP9B", "00ff"),
    # U+0000, U+00FF, 'A' as MySQL stores them (UTF-8): the bytes 00 ff 41; the euro sign is no byte
    "latin1_base64": ("VARCHAR", "\\x00c3bf41", "AP9B", "\\xe282ac"),
}


def _rules() -> dict[str, CastRule]:
    rules = {r.name: r for r in CAST_RULES.values()} | {r.name: r for r in OVERRIDES.values()}
    from alkemio_assets.core.casts import DECIMAL_TEXT, TEXT_UNBOUNDED

    rules[DECIMAL_TEXT.name] = DECIMAL_TEXT
    rules["text_unbounded"] = TEXT_UNBOUNDED
    return rules


def _run(rule: CastRule, duck_type: str, value: str) -> tuple[object, bool]:
    invalid = rule.invalid.format(v="v", **PARAMS) if rule.invalid else "false"
    with duckdb.connect() as duck:
        return duck.execute(
            f"WITH t AS (SELECT CAST(? AS {duck_type}) AS v) SELECT {rule.transform.format(v='v', **PARAMS)}, {invalid} FROM t",
            [value],
        ).fetchone()


def test_every_rule_has_an_example():
    assert set(_rules()) - {"text_unbounded"} == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_rule_converts_valid_values_and_catches_invalid_ones(name: str):
    rule = _rules()[name]
    duck_type, valid, produced, invalid = EXAMPLES[name]
    value, flagged = _run(rule, duck_type, valid)
    assert not flagged
    assert str(value) == str(produced) if not isinstance(produced, bool | int) else value == produced
    if invalid is not None:
        assert rule.invalid is not None
        with duckdb.connect() as duck:
            (flagged,) = duck.execute(
                f"WITH t AS (SELECT TRY_CAST(? AS {duck_type}) AS v) SELECT {rule.invalid.format(v='v', **PARAMS)} FROM t",
                [invalid],
            ).fetchone()
        assert flagged, f"{name} accepted {invalid!r}"


@pytest.mark.parametrize(("pair", "rule"), sorted(CAST_RULES.items(), key=lambda kv: kv[0]))
def test_every_pair_has_exactly_its_rule(pair: tuple[str, str], rule: CastRule):
    assert rule_for(*pair) is rule
    assert rule.comment, f"{pair}: a rule says why"


def test_flags_become_booleans_because_the_target_says_so():
    assert rule_for("tinyint", "boolean").name == "flag"
    assert rule_for("tinyint", "smallint").name == "integer"


@pytest.mark.parametrize(
    ("source", "target"), [("int", "uuid"), ("datetime", "date"), ("double", "integer"), ("json", "bytea")]
)
def test_a_pair_without_rule_is_refused_by_name(source: str, target: str):
    with pytest.raises(NoCastRule, match=f"MySQL {source} to PostgreSQL {target}"):
        rule_for(source, target)
