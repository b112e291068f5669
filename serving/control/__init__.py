"""Control plane: a pure plan from desired and observed state, applied by a backend (local or Kubernetes)."""
