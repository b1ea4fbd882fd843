"""4. Around the data's way: the preflight before it (`migration/preflight`); after the load the
database checks (`DB/verified`), the report, the cut-over settings they gate, and the way back
(the job `rollback`)."""
