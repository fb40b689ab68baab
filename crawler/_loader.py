"""Find the spider a user named: a file, a ``module:Class`` path, or a spider ``name``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from crawler._exceptions import SpiderLoadError
from crawler._spider import Spider

__all__ = ["find_spiders", "load_spider_class"]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _spiders_in(module: ModuleType) -> list[type[Spider]]:
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Spider) and obj.__module__ == module.__name__
    ]


def _import_file(path: Path) -> ModuleType:
    name = f"crawler_spider_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SpiderLoadError(f"cannot load spider file {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise SpiderLoadError(f"cannot load spider file {path}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise SpiderLoadError(
            f"cannot load spider file {path}: {type(exc).__name__}: {_one_line(exc)} "
            f"(at {frame.filename}:{frame.lineno})"
        ) from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise SpiderLoadError(f"cannot import spider module {name!r}: {exc}") from None
    except Exception as exc:
        raise SpiderLoadError(f"cannot import spider module {name!r}: {type(exc).__name__}: {_one_line(exc)}") from None


def _pick(spiders: list[type[Spider]], where: str, wanted: str | None) -> type[Spider]:
    if wanted is not None:
        for cls in spiders:
            if wanted in (cls.__name__, cls.name):
                return cls
        raise SpiderLoadError(f"no spider {wanted!r} in {where}; found: {', '.join(c.__name__ for c in spiders)}")
    if len(spiders) == 1:
        return spiders[0]
    if not spiders:
        raise SpiderLoadError(f"no Spider subclass in {where}")
    names = ", ".join(f"{c.__name__} (name {c.name!r})" for c in spiders)
    raise SpiderLoadError(f"several spiders in {where}: {names}; pick one with {where}:ClassName")


def find_spiders(directory: Path) -> dict[str, type[Spider]]:
    """Spiders by ``name`` from the ``crawler.spiders`` entry points and the ``*.py`` files of ``directory`` and
    its ``spiders/`` folder.  Files that fail to import are skipped."""
    found: dict[str, type[Spider]] = {}
    for ep in entry_points(group="crawler.spiders"):
        try:
            cls = ep.load()
        except Exception:
            continue
        if inspect.isclass(cls) and issubclass(cls, Spider):
            found.setdefault(cls.name, cls)
    for folder in (directory, directory / "spiders"):
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            try:
                module = _import_file(path)
            except SpiderLoadError:
                continue
            for cls in _spiders_in(module):
                found.setdefault(cls.name, cls)
    return found


def load_spider_class(target: str, *, search_dir: Path | None = None) -> type[Spider]:
    """Load the spider named by ``target``: a path to a ``.py`` file (optionally ``file.py:ClassName``), a
    ``package.module:ClassName`` path, or a spider's ``name`` found by :func:`find_spiders`.

    Raises :class:`crawler.SpiderLoadError` with a one-line reason (the import error and where it happened).
    """
    if target.endswith(".py") or ".py:" in target:
        stem, _, cls_name = target.partition(".py:") if ".py:" in target else (target[:-3], "", "")
        path = Path(stem + ".py")
        if not path.is_file():
            raise SpiderLoadError(f"spider file {path} not found")
        return _pick(_spiders_in(_import_file(path.resolve())), str(path), cls_name or None)
    if ":" in target:
        module_name, _, cls_name = target.partition(":")
        obj = getattr(_import_module(module_name), cls_name, None)
        if not (inspect.isclass(obj) and issubclass(obj, Spider)):
            raise SpiderLoadError(f"{module_name!r} has no Spider subclass named {cls_name!r}")
        return obj
    spiders = find_spiders(search_dir or Path.cwd())
    if target in spiders:
        return spiders[target]
    known = ", ".join(sorted(spiders)) or "none found"
    raise SpiderLoadError(f"no spider named {target!r} (known spiders: {known}); give a file, module:Class or a name")
