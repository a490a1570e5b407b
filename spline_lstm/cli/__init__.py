"""The operator commands (python -m spline_lstm ...), one module per subcommand."""
