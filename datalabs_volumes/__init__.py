"""Datalabs data and storage services: the volume catalogue, mounting, remote storage."""
