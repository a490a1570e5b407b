"""The Hydra application: the task, its callbacks, the launcher, path containment and the sweep record."""
