"""The run_id-scoped artifact store, atomic writes, the completion record and the health gate."""
