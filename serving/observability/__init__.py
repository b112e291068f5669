"""Observability beyond metrics: request ids, payload logging (CloudEvents), tracing, structured access logs.

Hooked in at one point per process: `serving.observability.asgi.Observed` wraps the model server, the
transformer server and the router. Nothing here imports OpenTelemetry unless tracing is switched on.
"""
