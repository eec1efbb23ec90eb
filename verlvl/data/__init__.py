"""RL data: parquet rows to the two prompt views, image handling, collate and resumable sampling."""
