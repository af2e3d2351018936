"""Jobs: the record, its SQLite store, the lanes that run it, and the service that ties them."""
