"""Alkemio + Ory Kratos MySQL 8 → PostgreSQL migration as a Dagster asset graph."""
