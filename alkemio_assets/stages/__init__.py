"""2. The data's way, each stage knowing nothing of Dagster: export (MySQL -> CSV, one moment of
the source), staging (DuckDB validates and casts), the staged orphan check, the load (COPY in
one transaction); the run's files and manifest, the faults told apart from bad data, the lock."""
