"""Datalabs pipeline services: CWL pipeline catalogue, runs and executors."""
