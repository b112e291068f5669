"""Autoscaling: the KPA rule (pure), its knobs from KServe fields and Knative annotations."""
