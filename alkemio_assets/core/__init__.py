"""What every phase shares, importing nothing else of ours: the settings, the cast table, the
ledger kinds, the errors a run raises, identifier quoting and the size of a batch of rows."""
