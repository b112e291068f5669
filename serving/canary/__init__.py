"""Progressive delivery: the Canary policy document and its pure analysis (verdict per interval, phase machine)."""
