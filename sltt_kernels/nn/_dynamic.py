"""Names for subclasses made on demand (the packed layers of nn/packed_layers.py, the recomputing
batch norms of nn/recompute.py): a name encodes the class extended, so that a module's
`__getattr__` can make the subclass again when pickle asks for it by that name."""

from __future__ import annotations


def _escape(s: str) -> str:
    return s.replace("_", "_0").replace(".", "_1")


def _unescape(s: str) -> str:
    return s.replace("_1", ".").replace("_0", "_")


def dynamic_name(prefix: str, cls: type) -> str:
    """The name of a subclass of `cls` made on demand: it encodes where `cls` is, so that
    `original_class` finds it again when pickle asks the module for that name."""
    return f"{prefix}{_escape(cls.__module__)}__{_escape(cls.__qualname__)}"


def original_class(prefix: str, name: str) -> type:
    """The class a `dynamic_name` was made from, imported again."""
    import importlib

    module, _, qualname = name[len(prefix):].partition("__")
    cls = importlib.import_module(_unescape(module))
    for part in _unescape(qualname).split("."):
        cls = getattr(cls, part)
    return cls
