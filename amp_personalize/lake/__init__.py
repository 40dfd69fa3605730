"""The parquet lake under data/lake/ and the duckdb warehouse of views over it."""
