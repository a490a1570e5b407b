"""MLflow: the store or server, the helper process that owns a run, the registry."""
