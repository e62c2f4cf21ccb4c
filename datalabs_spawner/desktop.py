"""Desktop datalabs: how a catalogue entry of kind ``desktop`` becomes a desktop in the browser.

A desktop datalab's session is a normal Jupyter server with jupyter-remote-desktop-proxy: at
``/desktop/`` it serves a noVNC client, and on the first connection it starts TigerVNC's
``vncserver`` (an X server that is also the VNC server) and proxies the websocket to its unix
socket itself. ``vncserver`` runs an *xstartup* program; ours is ``desktop_session.py``, which
starts a window manager and the datalab's ``command`` and stops them all when Jupyter goes.

The datalab's ``command`` is therefore the application, not the server: it travels in the
environment (``DATALABS_DESKTOP_COMMAND``, JSON), and the session command stays Jupyter's.
"""

from __future__ import annotations

import json
from pathlib import Path

from .catalogue import Datalab
from .desktop_session import COMMAND_ENV, WM_ENV

__all__ = ["COMMAND_ENV", "WM_ENV", "XSTARTUP_ENV", "SESSION_SCRIPT", "desktop_env"]

#: Read by jupyter-remote-desktop-proxy: the program vncserver runs once the display is up.
XSTARTUP_ENV = "JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP"
#: The xstartup shipped in this package (executable, standard library only).
SESSION_SCRIPT = Path(__file__).resolve().with_name("desktop_session.py")


def desktop_env(datalab: Datalab, xstartup: str | None = None) -> dict[str, str]:
    """Environment a desktop datalab's session needs; empty for other kinds.

    ``xstartup`` is the session script's path where the spawner knows it (the local spawner
    ships it); on Kubernetes the datalab image sets ``JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP``
    itself, since only the image knows where it put the script.
    """
    if datalab.kind != "desktop":
        return {}
    env: dict[str, str] = {}
    if datalab.command:
        # Absent, the image's own default application (if it sets one) is used.
        env[COMMAND_ENV] = json.dumps(list(datalab.command))
    if xstartup:
        env[XSTARTUP_ENV] = xstartup
    return env
