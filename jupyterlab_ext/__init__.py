"""Datalabs JupyterLab extension: the REST API and the notebook UI."""


def _jupyter_server_extension_points():
    """Where jupyter-server finds the extension (enabled by jupyter_server_config.d)."""
    from .app import DatalabsExtension

    return [{"module": "jupyterlab_ext.app", "app": DatalabsExtension}]
