"""Imports: other tools' exports and server logs read into a site through the ingest path, and
whole-site archives."""
