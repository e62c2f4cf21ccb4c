"""Datalabs sessions: the datalab catalogue, the spawn form and the Datalabs spawners."""
