"""The kubernetes backend: renders revisions to Deployments/Services and runs the kopf operator."""
