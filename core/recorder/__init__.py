"""Recording every event to crash-safe Parquet files, and reading them back (see docs/RECORDING.md)."""
