"""The hub's SQLite database (WAL): one file in the state directory, shared by the stores."""
