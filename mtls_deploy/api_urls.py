"""Where the inventory's APIs answer, for the consumers' bundles: each README names the URL of
every API its client may call (``pki.bundle_readme``)."""

API_GROUP = "api"


def bundle_apis(loaded=None) -> tuple[str, ...]:
    """``apis`` for ``pki.bundle``: each API host's (group api) ``server_name:https_port`` (the
    name alone for 443), each once, in the inventory's order; none without an inventory.

    Example: ``bundle_apis()`` -> ``("api1.lab.test:8441",)``
    """
    from . import inventory
    from .pki.bundle_readme import api_address

    if loaded is None and inventory.existing_inventory_dir() is None:
        return ()
    loaded = loaded or inventory.load()
    hosts = [loaded.host(name) for name in loaded.groups.get(API_GROUP, [])]
    found = (api_address(h.vars["server_name"], h.vars.get("https_port")) for h in hosts
             if h.vars.get("server_name"))  # fmt: skip
    return tuple(dict.fromkeys(found))
