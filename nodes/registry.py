"""``@register`` collects the pack's V3 node classes; the host reads them through ``comfy_entrypoint``."""

NODES: list[type] = []


def register(cls: type) -> type:
    NODES.append(cls)
    return cls
