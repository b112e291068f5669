"""Load tests (Locust) and the benchmark (wrk) for serving.

Run from the repository root: `serving loadtest SCENARIO ...` (or `python -m loadtests`) and
`python -m loadtests.bench`. Locustfiles live in `locustfiles/`, load shapes in `shapes/`, shared
settings in `locust.conf`.
"""
