"""One Dagster resource per outside system."""

from resources.mysql import MySQLResource
from resources.postgres import PostgresResource

__all__ = ["MySQLResource", "PostgresResource"]
