"""Update clocks: ``{pubKey: last clock}`` per snapshot."""

from __future__ import annotations

from collections.abc import Mapping


def compare_update_clocks(
    server: Mapping[str, int], client: Mapping[str, int]
) -> tuple[bool, dict[str, int]]:
    """Return ``(equal, missing)``: ``missing`` maps each pubKey whose clock differs to the
    client's clock (0 when the client has none), like the reference ``compareUpdateClocks``."""
    equal = dict(server) == dict(client)
    if equal:
        return True, {}
    missing = {k: client.get(k, 0) for k, v in server.items() if client.get(k) != v}
    return False, missing
