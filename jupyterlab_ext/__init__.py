"""Datalabs JupyterLab extension: the REST API and the notebook UI."""
