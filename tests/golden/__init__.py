"""Golden tests: tiny models against numbers produced by the official code (``shared/fixtures``)."""
