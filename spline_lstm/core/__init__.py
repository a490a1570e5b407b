"""The bottom layer: typed config, errors and exit codes, documents, JSON I/O, secrets, thread budget."""
