"""Datalabs JupyterLab extension: the REST API and the notebook UI."""


def _jupyter_server_extension_points():
    """Where jupyter-server finds the extension (enabled by jupyter_server_config.d)."""
    from .app import DatalabsExtension

    return [{"module": "jupyterlab_ext.app", "app": DatalabsExtension}]


def _jupyter_labextension_paths():
    """Where the built front end is (``jupyter-builder develop`` links it in for development)."""
    return [{"src": "labextension", "dest": "datalabs-jupyterlab"}]
