"""4. After the load: the database checks (`DB/verified`), the report, and the cut-over settings
they gate."""
