"""Offline evaluation of an artifacts version: protocol, baselines, metrics and the report.

Sits above both sides: it may import `training`, `app` and the shared packages."""
