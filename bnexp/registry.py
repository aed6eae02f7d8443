"""Name -> implementation maps that the implementing packages fill themselves.

A normalization layer, a model, a monitor or a report study registers itself once,
where it is defined, with a decorator whose arguments are plain literals:

    @NORMALIZATIONS.register("gluon", summary="MXNet's own gluon.nn.BatchNorm")
    def gluon_bn(spec, channels, layer): ...

Everything that needs the names -- the config check, `--help` texts, the report, the
docs -- asks the registry, so adding a variant is one module (and its YAML file) and
nothing else lists the names.

Names are known before anything is imported: the registry reads the decorators from
the source of its package's modules (`ast`, no execution). That matters because the
layers import MXNet, and MXNet fixes its thread count when it is imported -- which
bnexp decides only after the config is checked. `get(name)` imports the one module
that registered `name`, and the decorator running there hands over the object.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

from bnexp.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    module: str        # the module that registers it
    summary: str       # one line for --help, error messages and the docs
    order: int         # position in listings (e.g. the report's sections)
    settings: tuple[str, ...] = ()  # the config keys of its own (bn=ghost: virtual_batch), for
                                    # run names, TensorBoard's HParams and the report


class Registry(Generic[T]):
    """The entries registered in the modules of `package` through `<variable>.register`."""

    def __init__(self, kind: str, package: str, variable: str, config_key: str):
        self.kind, self.package, self.variable, self.config_key = kind, package, variable, config_key
        self._objects: dict[str, T] = {}
        self._entries: dict[str, Entry] | None = None

    def register(self, name: str, summary: str = "", order: int = 0,
                 settings: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator: `name` is this class or function. Its arguments must be literals
        (they are read from the source before the module is imported); `settings` names
        the config keys that belong to it alone."""
        def add(value: T) -> T:
            self._objects[name] = value
            return value
        return add

    def _scan(self) -> dict[str, Entry]:
        """Every registration in the package's modules, read from their source."""
        if self._entries is None:
            spec = importlib.util.find_spec(self.package)
            folders = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
            entries: dict[str, Entry] = {}
            for path in sorted(p for folder in folders for p in folder.glob("*.py")):
                module = f"{self.package}.{path.stem}"
                for entry in self._registrations(ast.parse(path.read_text()), module):
                    if entry.name in entries:
                        raise ValueError(f"{self.kind} {entry.name!r} is registered in both "
                                         f"{entries[entry.name].module} and {module}")
                    entries[entry.name] = entry
            self._entries = entries
        return self._entries

    def _registrations(self, tree: ast.Module, module: str) -> Iterator[Entry]:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "register" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == self.variable):
                continue
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            fields = dict(zip(("name", "summary", "order", "settings"), args), **kwargs)
            yield Entry(fields["name"], module, fields.get("summary", ""), fields.get("order", 0),
                        tuple(fields.get("settings", ())))

    def entries(self) -> list[Entry]:
        return sorted(self._scan().values(), key=lambda e: (e.order, e.name))

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def entry(self, name: str) -> Entry:
        """The registration of `name` (no import); a ConfigError if there is none."""
        entry = self._scan().get(name)
        if entry is None:
            raise ConfigError(self.unknown(name))
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._scan()

    def get(self, name: str) -> T:
        """The implementation of `name` (its module imported now); a ConfigError naming the
        key and the choices if there is none."""
        entry = self._scan().get(name)
        if entry is None:
            raise ConfigError(self.unknown(name))
        importlib.import_module(entry.module)
        return self._objects[name]

    def unknown(self, name: Any) -> str:
        """One line: which value of which key is unknown, the choices, the closest one."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" Did you mean {self.config_key}={close[0]}?" if close else ""
        return (f"{self.config_key}={name}: unknown {self.kind}; choose one of "
                f"{', '.join(self.names())}.{hint}")
