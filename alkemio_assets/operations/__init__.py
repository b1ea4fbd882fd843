"""4. Around the data's way: the preflight before it (`migration/preflight`); after the load the
database checks (`DB/verified`), the report, and the cut-over settings they gate."""
