"""Named records across the jit boundary, at the dispatch cost of plain tuples.

Numba compiles typing.NamedTuple records: attribute access (`m.n`), one struct like a tuple.
But its dispatcher fingerprints a namedtuple argument field by field, encoding each field's
name, on every call: one transformer layer's ~90 named fields cost 18-23 us per call, against
6-9 us for the same values as plain tuples (measured on 2 cores), 0.4-0.7 ms of a ~2.6 ms
SmolLM2 decode step over 30 layers. So records cross the boundary as plain tuples, converted
once on the Python side (`plain`), and are read as records in jitted code (`as_record`). A
record and its plain tuple have the same Numba data model (the same struct, or the same
array for equal field types), so the conversion costs no instruction.

Nested records follow the class's type hints: a field annotated with a record class, or with a
tuple of them (tuple[A, B] or tuple[A, ...]), is a record too; any other field keeps its type.
"""

from __future__ import annotations

import typing

from numba.core import errors, types
from numba.extending import intrinsic


def plain(v):
    """A record (and the records in it) as nested plain tuples; other values as they are."""
    if isinstance(v, tuple):
        return tuple(plain(e) for e in v)
    return v


def _is_record(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


def _record_type(cls, ty: types.BaseTuple) -> types.BaseTuple:
    """Numba type of record class cls whose plain tuple has type ty."""
    if not isinstance(ty, types.BaseTuple) or len(ty) != len(cls._fields):
        raise errors.TypingError(f"{cls.__name__} has {len(cls._fields)} fields, got {ty}")
    hints = typing.get_type_hints(cls)
    return types.BaseTuple.from_types([_field_type(hints.get(f), t) for f, t in zip(cls._fields, ty.types)], cls)


def _field_type(hint, ty):
    if _is_record(hint):
        return _record_type(hint, ty)
    if typing.get_origin(hint) is not tuple or not isinstance(ty, types.BaseTuple):
        return ty
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:  # tuple[A, ...]
        args = (args[0],) * len(ty)
    if not args or not all(_is_record(a) for a in args):
        return ty
    if len(ty) != len(args):
        raise errors.TypingError(f"expected a tuple of {len(args)} records, got {ty}")
    return types.BaseTuple.from_types([_record_type(a, t) for a, t in zip(args, ty.types)])


@intrinsic
def as_record(typingctx, cls, t):
    """In jitted code: the plain tuple t (from `plain`) as an instance of record class cls."""
    if not isinstance(cls, types.NamedTupleClass):
        return None
    rec = _record_type(cls.instance_class, t)

    def codegen(context, builder, sig, args):
        # Same data model, same LLVM value; the result is a new reference, as an intrinsic's must be.
        context.nrt.incref(builder, sig.args[1], args[1])
        return args[1]

    return rec(cls, t), codegen
