"""Datalabs JupyterLab extension: the REST API and the notebook UI."""


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    from .app import DatalabsExtension

    return [{"module": "jupyterlab_ext.app", "app": DatalabsExtension}]
