"""Offline evaluation: metrics and reports that may use training, the served app and the shared core."""
