"""A submission whose training crashes: the harness must record an error and score 0."""

raise RuntimeError("this example fails on purpose before training anything")
