"""The single-user server of local sessions: ``jupyterhub-singleuser``, started cheaper.

Run as ``python -m datalabs_spawner.singleuser`` (the embedded hub's ``Spawner.cmd``); it takes
the same arguments and environment as ``jupyterhub-singleuser``.

Why not ``jupyterhub-singleuser`` itself: when the ``rfc3987-syntax`` package is installed (it
comes with ``jsonschema[format-nongpl]``, which ``jupyter-events`` requires), importing
``jsonschema`` builds a Lark grammar for it. Measured on the 2-core machine: a JupyterLab server
start took 2.3 s of CPU with it and 0.9 s without it, the grammar being most of each session's
start. It only serves JSON-Schema's ``iri``/``iri-reference`` formats, which no schema of
Jupyter's or ours uses, so the server starts without it.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Start ``jupyterhub-singleuser`` without the ``rfc3987_syntax`` grammar."""
    # A None entry makes `import rfc3987_syntax` raise ImportError, which jsonschema handles.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from jupyterhub.singleuser import main as singleuser_main

    singleuser_main()


if __name__ == "__main__":
    main()
