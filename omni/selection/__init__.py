"""Selection: the filter's rules over teacher scores and the Parquet manifests they produce."""
