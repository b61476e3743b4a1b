"""The async side of reer: generator client, the per-record search, the CLI (``agents.run``)."""
