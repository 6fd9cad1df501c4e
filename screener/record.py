"""Frozen record classes that are cheap to define.

Classic AGI starts a new Python process for every call, so each class that
the process defines before its first command delays that command. A frozen
dataclass costs 0.5 to 0.9 ms to define on CPython 3.11 and 3.14, because
``dataclasses`` compiles its methods from generated source. A :class:`Record`
subclass costs under 0.1 ms: its methods are shared, and
``__init_subclass__`` only collects the field names and defaults.

mypy treats a record class as a frozen dataclass (PEP 681's
``dataclass_transform``), so constructors, field types and assignments are
checked as for dataclasses. At run time a record behaves like a frozen
dataclass with ``eq=True``: positional or keyword construction, value
equality, hashing, a field-by-field repr and no assignment after
construction. It differs in two ways: a field annotated again in a subclass
without a value has no default, as mypy reads it, and only a list, dict or
set default is rejected as mutable, where dataclasses reject any unhashable
one. :func:`replace` and :func:`fields` stand in for the functions of
``dataclasses``. Modules that classic AGI does not import before its
first command keep using dataclasses.
"""

from __future__ import annotations

# typing is not imported at run time: importing it costs classic AGI about
# 2.5 ms on CPython 3.14. mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, TypeVar, dataclass_transform

    R = TypeVar("R", bound="Record")
else:

    def dataclass_transform(**_options: object) -> object:
        return lambda cls: cls


@dataclass_transform(frozen_default=True)
class Record:
    """Base class of frozen records; fields are annotated class attributes.

    A field's class attribute, if any, is its default. Names that start with
    an underscore are not fields. A field named in ``_hidden_fields`` is left
    out of the repr, for secrets.
    """

    _field_names: ClassVar[tuple[str, ...]] = ()
    _field_set: ClassVar[frozenset[str]] = frozenset()
    _defaults: ClassVar[dict[str, Any]] = {}
    _hidden_fields: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__(**options)
        names = list(cls._field_names)
        defaults = dict(cls._defaults)
        # The class's own annotations, in order: strings under
        # ``from __future__ import annotations``, evaluated otherwise.
        for name, annotation in cls.__annotations__.items():
            if name.startswith("_") or _is_class_variable(annotation):
                continue
            if name not in names:
                names.append(name)
            if name in cls.__dict__:
                default = cls.__dict__[name]
                if isinstance(default, (list, dict, set)):
                    raise ValueError(
                        f"mutable default {type(default).__name__} for field"
                        f" {name!r} of {cls.__name__}: it would be shared by"
                        " every instance"
                    )
                defaults[name] = default
            elif name in defaults:
                # Annotated again without a value: required, as mypy reads
                # it. A dataclass would keep the inherited default.
                del defaults[name]
        _check_default_order(cls.__name__, names, defaults)
        cls._field_names = tuple(names)
        cls._field_set = frozenset(names)
        cls._defaults = defaults
        # For positional match patterns. mypy derives them itself.
        cls.__match_args__ = tuple(names)  # type: ignore[attr-defined, misc]

    def __init__(self, *arguments: Any, **values: Any) -> None:
        names = self._field_names
        if len(arguments) == len(names) and not values:
            # Every field given in order, as when rows are read from the
            # database: the quickest case.
            self.__dict__.update(zip(names, arguments, strict=True))
            return
        if arguments:
            if len(arguments) > len(names):
                raise TypeError(
                    f"{type(self).__name__}() takes {len(names)} positional"
                    f" arguments but {len(arguments)} were given"
                )
            for name, value in zip(names, arguments, strict=False):
                if name in values:
                    raise TypeError(
                        f"{type(self).__name__}() got multiple values for {name!r}"
                    )
                values[name] = value
        state = self.__dict__
        state.update(self._defaults)
        state.update(values)
        if state.keys() != self._field_set:
            self._reject(values)

    def _reject(self, values: dict[str, Any]) -> None:
        """Raise TypeError for unknown or missing fields."""
        name = type(self).__name__
        unknown = [key for key in values if key not in self._field_set]
        if unknown:
            raise TypeError(f"{name}() got an unexpected field {unknown[0]!r}")
        missing = [key for key in self._field_names if key not in self.__dict__]
        raise TypeError(f"{name}() is missing fields: {', '.join(missing)}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen record")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen record")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__[name] for name in self._field_names))

    def __repr__(self) -> str:
        visible = ", ".join(
            f"{name}={self.__dict__[name]!r}"
            for name in self._field_names
            if name not in self._hidden_fields
        )
        return f"{type(self).__qualname__}({visible})"


def _is_class_variable(annotation: object) -> bool:
    """Tell whether ``annotation`` is ClassVar[...], written or evaluated."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _check_default_order(
    class_name: str, names: list[str], defaults: dict[str, Any]
) -> None:
    """Raise TypeError if a field without a default follows one with a default."""
    with_default = None
    for name in names:
        if name in defaults:
            with_default = name
        elif with_default is not None:
            raise TypeError(
                f"field {name!r} of {class_name} has no default but follows"
                f" {with_default!r}, which has one"
            )


def replace(record: R, **changes: Any) -> R:
    """Return a copy of ``record`` with the fields in ``changes`` set."""
    unknown = [name for name in changes if name not in record._field_set]
    if unknown:
        raise TypeError(f"{type(record).__name__} has no field {unknown[0]!r}")
    copy = object.__new__(type(record))
    copy.__dict__.update(record.__dict__)
    copy.__dict__.update(changes)
    return copy


def fields(record_class: type[Record]) -> tuple[str, ...]:
    """Return the field names of a record class, in declaration order."""
    return record_class._field_names
