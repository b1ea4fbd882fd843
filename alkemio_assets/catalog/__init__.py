"""1. What each side holds and the contract between them: MySQL and PostgreSQL reflected, the
catalog snapshot, the foreign-key lineage, the application versions, each column's cast rule
(the contract) and the queries that prove what the contract forbids. No Dagster, no data moved."""
