"""Executors start pipeline runs: ``local`` (a cwltool process per run, the embedded default)
and ``kubernetes`` (a Calrissian Job per run, built here as a manifest)."""
