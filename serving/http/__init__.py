"""Thin HTTP transports over the data plane (Starlette)."""
