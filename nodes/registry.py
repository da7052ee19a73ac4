"""``@node("Display name")`` registers a node class under its own class name."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}


def node(display_name: str):
    def register(cls: type) -> type:
        NODE_CLASS_MAPPINGS[cls.__name__] = cls
        NODE_DISPLAY_NAME_MAPPINGS[cls.__name__] = display_name
        return cls

    return register
