"""Fetching and validating what the lists name: the list readers, the polite bounded fetcher, validation, the downloads journal and blob store, duplicates and leaks, and ingest itself."""
