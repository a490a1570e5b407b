"""The Keras networks and their training loop."""
