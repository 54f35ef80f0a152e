"""Column types of the models: `StrEnumType`, a string column that holds one of a `StrEnum`'s members.

The database keeps plain strings (VARCHAR, with the tables' CHECK constraints listing the values), so using it
changes no schema and needs no migration. In Python the column is the enum: a loaded row gives members, and a
value set on a row (a string included, as tests and `Model(state="...")` do) is made a member at once, so code
never meets a bare string where it expects `.is_terminal` or an `is` comparison. One way around it: a bulk
`update(Model).values(state="...")` copies its raw value into the rows the session has loaded, so compare such
columns with `==` (a member equals its string), or pass members to those updates.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import String, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import TypeDecorator

from app.core.db import Base

E = TypeVar("E", bound=StrEnum)


class StrEnumType(TypeDecorator[E]):
    """VARCHAR(`length`) in the database, a member of `enum` in Python."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    @property
    def python_type(self) -> type[E]:
        return self.enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        # Strings pass as they are: a query may compare with any text (a console filter), and writes are
        # checked on assignment (below) and by the table's CHECK constraint.
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)

    def coerce(self, value: E | str | None) -> E | None:
        """The member for `value` (a member or its string); ValueError for a value the enum does not have."""
        return None if value is None else self.enum(value)


@event.listens_for(Base, "attribute_instrument", propagate=True)
def _coerce_on_set(cls: type[Any], key: str, attribute: InstrumentedAttribute[Any]) -> None:
    """Every mapped column of this type turns what is assigned to it into its enum's member."""
    columns = getattr(attribute.property, "columns", None)
    if not columns or not isinstance(columns[0].type, StrEnumType):
        return
    column_type: StrEnumType[Any] = columns[0].type

    @event.listens_for(attribute, "set", retval=True, propagate=True)
    def coerce(target: object, value: str | None, old: object, initiator: object) -> StrEnum | None:
        return column_type.coerce(value)
