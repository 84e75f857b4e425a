"""Serving gold to people: Trino table registration, the Metabase provisioner and the embedded dashboard."""
