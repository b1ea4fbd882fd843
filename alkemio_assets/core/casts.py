"""The cast rules: one row per (MySQL type, PostgreSQL type) pair, chosen by the pair, never by order.

No Dagster and no drivers here: a rule is data. `transform` and `invalid` are DuckDB SQL
templates over `{v}` (the column as read from the CSV file) and the target's parameters
(`{n}` length, `{lo}`/`{hi}` integer range, `{p}`/`{s}` numeric precision and scale).
`invalid` is true for a non-NULL value that cannot go into the target column; the staging step
stops on the first such row and names it. A pair with no rule stops the run before any data
moves (`rule_for` raises), so nothing passes through unconverted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# MySQL DATA_TYPE families. A MariaDB `json` column reports longtext; the catalog's `is_json`
# turns it back into 'json' (source_family).
INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint"})
TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext"})
BLOB_TYPES = frozenset({"tinyblob", "blob", "mediumblob", "longblob", "binary", "varbinary"})
DATETIME_TYPES = frozenset({"datetime", "timestamp"})
FLOAT_TYPES = frozenset({"float", "double"})

# PostgreSQL families (information_schema.columns.data_type; 'enum' for an enum type).
PG_INTEGER = frozenset({"smallint", "integer", "bigint"})
PG_TEXT = frozenset({"text", "character varying", "character"})
PG_JSON = frozenset({"json", "jsonb"})
PG_TIMESTAMP = frozenset({"timestamp without time zone", "timestamp with time zone"})

PG_INTEGER_RANGE = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}

# How DuckDB reads each MySQL type from our CSV files: declared, never sniffed. Text, temporal
# and binary values are read as VARCHAR so that the rule, not the reader, decides what is valid.
_READ_AS = {
    # HUGEINT holds bigint unsigned too; the rule checks the target's range.
    **dict.fromkeys(["tinyint", "smallint", "mediumint", "int", "bigint"], "HUGEINT"),
    **dict.fromkeys(["float", "double"], "DOUBLE"),
    "year": "INTEGER",
}


def _regex(pattern: str) -> str:
    """A regular expression inside a template: its braces are not placeholders."""
    return pattern.replace("{", "{{").replace("}", "}}")


_UUID_PATTERN = _regex("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BYTEA_PATTERN = _regex("^\\\\x([0-9a-f]{2})*$")
_TIMESTAMP_PATTERN = _regex("^\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}(\\.\\d{1,6})?$")


@dataclass(frozen=True)
class CastRule:
    """What a source/target pair becomes: the DuckDB expression and the validity test."""

    name: str
    transform: str
    invalid: str | None
    reason: str  # what an invalid value is, for the error message
    comment: str  # the domain fact behind the rule
    # a DuckDB expression of the refused value {v}: the precise reason for that value, where
    # `reason` names more than one cause or the value's own numbers make it clearer
    explain: str | None = None


def _rules(sources: Iterable[str], targets: Iterable[str], rule: CastRule) -> dict[tuple[str, str], CastRule]:
    return {(s, t): rule for s in sources for t in targets}


FLAG = CastRule(
    "flag",
    "CASE {v} WHEN 0 THEN false WHEN 1 THEN true END",
    "{v} NOT IN (0, 1)",
    "not 0 or 1",
    "MySQL has no boolean: the applications keep flags in tinyint; only 0 and 1 are booleans",
    "CAST({v} AS VARCHAR) || ' is not 0 or 1: not a boolean'",
)
INTEGER = CastRule(
    "integer",
    "{v}",
    "{v} < {lo} OR {v} > {hi}",
    "out of the target integer's range",
    "bigint unsigned and int unsigned can exceed PostgreSQL's signed types: range checked",
    "CAST({v} AS VARCHAR) || ' is outside the target integer''s range {lo}..{hi}'",
)
INTEGER_TO_NUMERIC = CastRule("integer_numeric", "CAST({v} AS HUGEINT)", None, "", "any integer fits numeric")
DECIMAL = CastRule(
    "decimal",
    "{v}",
    "abs(CAST({v} AS DOUBLE)) >= power(10, {p} - {s}) OR {v} <> round({v}, {s})",
    "does not fit numeric({p},{s})",
    "decimal(p,s) keeps its digits in numeric; a narrower target would round or overflow",
)
DECIMAL_TEXT = CastRule(
    "decimal_text",
    "{v}",
    "NOT regexp_full_match({v}, '"
    + _regex("^-?\\d{1,{p_int}}(\\.\\d{1,{s}})?$").replace("{{p_int}}", "{p_int}").replace("{{s}}", "{s}")
    + "')",
    "does not fit numeric({p},{s})",
    "decimal wider than DuckDB's 38 digits travels as its exact text, checked digit by digit",
)
FLOAT = CastRule("float", "{v}", None, "", "IEEE doubles round-trip through their shortest text form")
TIMESTAMP = CastRule(
    "timestamp",
    "strftime(CAST({v} AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f')",
    "NOT regexp_full_match({v}, '" + _TIMESTAMP_PATTERN + "') OR TRY_CAST({v} AS TIMESTAMP) IS NULL",
    "not a valid date and time (MySQL zero dates such as 0000-00-00 have no PostgreSQL value)",
    "datetime(n)/timestamp(n) keep their microseconds; MySQL datetime has no zone and is read as UTC",
)
TIMESTAMPTZ = CastRule(
    "timestamptz",
    "strftime(CAST({v} AS TIMESTAMP), '%Y-%m-%d %H:%M:%S.%f') || '+00'",
    TIMESTAMP.invalid,
    TIMESTAMP.reason,
    "a zone-less MySQL value becomes an instant by reading it as UTC (exports pin time_zone to UTC)",
)
DATE = CastRule(
    "date", "{v}", "TRY_CAST({v} AS DATE) IS NULL", "not a valid date (zero dates included)", "date is date"
)
TIME = CastRule(
    "time",
    "{v}",
    "TRY_CAST({v} AS TIME) IS NULL",
    "not a time of day (MySQL time is an interval up to 838:59:59)",
    "MySQL time can exceed a day; PostgreSQL time cannot",
)
YEAR = CastRule("year", "{v}", None, "", "year is a small integer")
TEXT = CastRule(
    "text",
    "{v}",
    "length({v}) > {n} OR contains({v}, chr(0))",
    "longer than {n} characters, or contains NUL (PostgreSQL text cannot)",
    "varchar(n) counts characters on both sides; unbounded when the target has no length",
    "CASE WHEN length({v}) > {n} THEN CAST(length({v}) AS VARCHAR) || ' characters, the column allows {n}' "
    "ELSE 'contains NUL at character ' || CAST(strpos({v}, chr(0)) AS VARCHAR) || ' (PostgreSQL text cannot hold NUL)' END",
)
TEXT_UNBOUNDED = CastRule(
    "text",
    "{v}",
    "contains({v}, chr(0))",
    "contains NUL (PostgreSQL text cannot)",
    "text and unbounded character varying take any string but one with NUL",
    "'contains NUL at character ' || CAST(strpos({v}, chr(0)) AS VARCHAR) || ' (PostgreSQL text cannot hold NUL)'",
)
UUID = CastRule(
    "uuid",
    "lower({v})",
    "NOT regexp_full_match({v}, '" + _UUID_PATTERN + "')",
    "not a canonical UUID (8-4-4-4-12 hex digits)",
    "char(36) keys become uuid; PostgreSQL prints them in lower case",
)
JSON = CastRule(
    "json",
    "{v}",
    "NOT json_valid({v})",
    "not valid JSON",
    "MySQL json and JSON-in-text become json; validated so that a bad document stops the load",
)
JSONB = CastRule(
    "jsonb",
    "{v}",
    "NOT json_valid({v}) OR contains({v}, '\\u0000')",
    "not valid JSON, or holds \\u0000 (jsonb cannot)",
    "jsonb parses the document: it also refuses the NUL escape that json accepts",
)
ENUM = CastRule(
    "enum",
    "{v}",
    None,
    "",
    "an enum becomes a PostgreSQL enum type; every MySQL label must exist there (checked in the plan)",
)
BYTEA = CastRule(
    "bytea",
    "{v}",
    "NOT regexp_full_match({v}, '" + _BYTEA_PATTERN + "')",
    "not hex-encoded bytes",
    "blobs travel as PostgreSQL's \\x hex text and load as bytea unchanged",
)

CAST_RULES: dict[tuple[str, str], CastRule] = {
    **_rules(["tinyint"], ["boolean"], FLAG),
    **_rules(INTEGER_TYPES, PG_INTEGER, INTEGER),
    **_rules(INTEGER_TYPES, ["numeric"], INTEGER_TO_NUMERIC),
    **_rules(["decimal"], ["numeric"], DECIMAL),
    **_rules(FLOAT_TYPES, ["double precision"], FLOAT),
    **_rules(["float"], ["real"], FLOAT),
    **_rules(DATETIME_TYPES, ["timestamp without time zone"], TIMESTAMP),
    **_rules(DATETIME_TYPES, ["timestamp with time zone"], TIMESTAMPTZ),
    **_rules(["date"], ["date"], DATE),
    **_rules(["time"], ["time without time zone"], TIME),
    **_rules(["year"], ["smallint", "integer"], YEAR),
    **_rules(TEXT_TYPES | {"json", "enum", "set"}, PG_TEXT, TEXT),
    **_rules(["char", "varchar"], ["uuid"], UUID),
    **_rules(TEXT_TYPES | {"json"}, ["json"], JSON),
    **_rules(TEXT_TYPES | {"json"}, ["jsonb"], JSONB),
    **_rules(["enum"], ["enum"], ENUM),
    **_rules(BLOB_TYPES, ["bytea"], BYTEA),
}

# Per-column overrides (migration.toml), like pgloader's column casts: for what the type pair
# cannot say. The column is exported as bytes, whatever its declared type.
OVERRIDES: dict[str, CastRule] = {
    "base64": CastRule(
        "base64",
        "base64(unhex(substr({v}, 3)))",
        "NOT regexp_full_match({v}, '" + _BYTEA_PATTERN + "')",
        "not hex-encoded bytes",
        "bytes kept in a text column (the application's compressed whiteboards) become base64 text",
    ),
    "bytea": BYTEA,
    # The characters are the bytes: each of U+0000..U+00FF becomes that byte again, so the
    # deflate output the application wrote with Buffer#toString('binary') comes back whole.
    "latin1_base64": CastRule(
        "latin1_base64",
        "base64(from_hex(array_to_string(list_transform(string_split(decode(unhex(substr({v}, 3))), ''), "
        "lambda c: printf('%02x', unicode(c))), '')))",
        "NOT regexp_full_match({v}, '" + _BYTEA_PATTERN + "') "
        "OR regexp_matches(decode(unhex(substr({v}, 3))), '[^\\x{{00}}-\\x{{ff}}]')",
        "holds a character above U+00FF, so it is not bytes written as latin-1 characters",
        "bytes the application wrote as latin-1 characters into a utf8mb4 text column become base64 of those bytes",
    ),
}


class NoCastRule(LookupError):
    """A (MySQL, PostgreSQL) type pair with no rule: the run must not start."""


def source_family(data_type: str, is_json: bool) -> str:
    return "json" if is_json else data_type


DUCKDB_MAX_DECIMAL = 38


def read_as(data_type: str, is_json: bool, precision: int | None = None, scale: int | None = None) -> str:
    """The DuckDB type declared for this MySQL column when reading our CSV file."""
    if data_type == "decimal":
        # MySQL allows 65 digits, DuckDB 38: wider decimals stay exact text (DECIMAL_TEXT).
        if precision is not None and precision <= DUCKDB_MAX_DECIMAL:
            return f"DECIMAL({precision},{scale or 0})"
        return "VARCHAR"
    return _READ_AS.get(source_family(data_type, is_json), "VARCHAR")


def rule_for(source: str, target: str) -> CastRule:
    """The one rule for a (source family, target family) pair."""
    try:
        return CAST_RULES[(source, target)]
    except KeyError:
        raise NoCastRule(f"no cast rule from MySQL {source} to PostgreSQL {target}") from None
