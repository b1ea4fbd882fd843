"""The migration verification checklist as Dagster asset checks, one function per item."""
