"""The exceptions module: one tree, drawn once, with every error in it and every error public."""

from __future__ import annotations

import inspect
import re

import oauth_loopback as ol
from oauth_loopback import _errors


def _classes() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(_errors).items()
        if inspect.isclass(obj) and issubclass(obj, ol.OAuthLoopbackError)
    }


def test_the_drawn_tree_names_every_error_under_its_parent() -> None:
    """Each error appears in the module docstring's tree, indented under the class it derives from."""
    doc = _errors.__doc__ or ""
    lines = [
        line for line in doc.splitlines() if re.search(r"[├└]── \w+|^    OAuthLoopbackError", line)
    ]
    depth_of: dict[str, int] = {}
    parents: dict[str, str] = {}
    stack: list[str] = []
    for line in lines:
        match = re.search(r"(\w+)", line.replace("├──", "").replace("└──", "").replace("│", ""))
        assert match is not None
        name = match.group(1)
        depth = (line.find(name) - 4) // 4
        del stack[depth:]
        if stack:
            parents[name] = stack[-1]
        stack.append(name)
        depth_of[name] = depth
    classes = _classes()
    assert set(depth_of) == set(classes)
    for name, parent in parents.items():
        assert classes[parent] in classes[name].__bases__, (name, parent)


def test_every_error_is_exported_from_the_package() -> None:
    """Users catch them as oauth_loopback.X, with the public module in tracebacks."""
    for name, cls in _classes().items():
        if name == "InvalidAuthorizationURL":
            continue  # oauth_loopback.mcp's, exported there
        assert getattr(ol, name) is cls, name
        assert name in ol.__all__
        assert cls.__module__ == "oauth_loopback"
