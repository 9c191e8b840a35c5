"""Reporting: what a run did, as tables, plots and contact sheets a user reads at a glance."""
