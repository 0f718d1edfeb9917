"""secsync-jupyter: end-to-end encrypted real-time collaboration for Jupyter notebooks."""

__version__ = "0.1.0"


def _jupyter_server_extension_points():
    return [{"module": "secsync_jupyter.relay.extension", "app": _extension_app()}]


def _extension_app():
    from .relay.extension import SecsyncRelayExtension

    return SecsyncRelayExtension
