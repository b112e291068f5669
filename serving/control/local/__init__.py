"""The local backend of `serving up`: supervised processes, autoscaler, canaries and the control API."""
