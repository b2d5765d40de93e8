"""The memory core: storage, the exchange intake, and (later) facts and recall."""
