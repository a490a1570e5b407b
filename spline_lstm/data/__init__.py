"""Loading and validating series: files (CSV, Parquet), panels of one or many series, synthetic data."""
