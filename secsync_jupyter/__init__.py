"""secsync-jupyter: end-to-end encrypted real-time collaboration for Jupyter notebooks."""

__version__ = "0.1.0"

__all__ = ["new_document_key", "open_document", "open_notebook"]


def __getattr__(name: str):
    # lazy: importing the package (or secsync_jupyter.protocol) must not load asyncio/websockets
    if name in ("open_notebook", "open_document", "new_document_key"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points():
    return [{"module": "secsync_jupyter.relay.extension", "app": _extension_app()}]


def _extension_app():
    from .relay.extension import SecsyncRelayExtension

    return SecsyncRelayExtension
