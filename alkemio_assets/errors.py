"""The one error a data problem raises: what, where (database, table, row, column), what to do."""

from __future__ import annotations

SHOWN_VALUE = 120


def shorten(value: object, limit: int = SHOWN_VALUE) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 12] + f"...({len(text)} chars)"


class MigrationDataError(RuntimeError):
    """A value that cannot move. Nothing of the table has been written when this is raised."""

    def __init__(
        self,
        database: str,
        table: str,
        row: int | None,
        column: str | None,
        value: object,
        problem: str,
        hint: str = "",
    ):
        self.database, self.table, self.row, self.column, self.value = database, table, row, column, value
        self.problem, self.hint = problem, hint
        where = f"{database}.{table}"
        if row is not None:
            where += f", CSV row {row} (line {row + 1} counting the header)"
        if column is not None:
            where += f", column {column}"
        shown = "" if value is None and column is None else f", value {shorten(value)}"
        message = f"{where}{shown}: {problem}"
        if hint:
            message += f". {hint}"
        super().__init__(message)

    def __reduce__(self):
        # raised in a process of its own (a key range's export), it travels back whole
        return type(self), (self.database, self.table, self.row, self.column, self.value, self.problem, self.hint)

    def after(self, rows: int) -> MigrationDataError:
        """The same error, its row counted after `rows` rows that come before it in the file."""
        cls, (database, table, row, *rest) = self.__reduce__()
        return cls(database, table, None if row is None else row + rows, *rest)
