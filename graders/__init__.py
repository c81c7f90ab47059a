"""Grader plugins, one subpackage per family (ranking, abtest, endpoint, quality, testsuite) and
`completion`. Each grader registers by name in harness.core.GRADERS; the harness finds them through
the `harness.graders` entry points (pyproject.toml), importing a family only when a spec names one
of its graders. Nothing is imported here.
"""
