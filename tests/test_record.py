"""Record classes: the frozen-dataclass behaviour the rest of the code relies on."""

from __future__ import annotations

import copy
import pickle
from typing import ClassVar

import pytest

from screener import record
from screener.config import Ami, Config, Names
from screener.record import Record


class Entry(Record):
    value: str
    note: str = ""
    count: int = 0


class Secret(Record):
    _hidden_fields = frozenset({"password"})

    user: str
    password: str


def test_positional_and_keyword_construction() -> None:
    entry = Entry("a", count=3)

    assert entry.value == "a"
    assert entry.note == ""
    assert entry.count == 3


def test_missing_field_raises() -> None:
    with pytest.raises(TypeError, match="missing fields: value"):
        Entry()  # type: ignore[call-arg]


def test_unknown_field_raises() -> None:
    with pytest.raises(TypeError, match="unexpected field 'colour'"):
        Entry("a", colour="red")  # type: ignore[call-arg]


def test_unknown_field_with_missing_raises() -> None:
    # As many keys as fields, but one unknown in place of the missing one.
    with pytest.raises(TypeError, match="unexpected field 'colour'"):
        Entry(note="n", count=1, colour="red")  # type: ignore[call-arg]


def test_too_many_positional_raises() -> None:
    with pytest.raises(TypeError, match="takes 3 positional arguments but 4"):
        Entry("a", "b", 1, 2)  # type: ignore[call-arg]


def test_field_given_twice_raises() -> None:
    with pytest.raises(TypeError, match="multiple values for 'value'"):
        Entry("a", value="b")  # type: ignore[misc]


def test_fields_cannot_be_assigned() -> None:
    entry = Entry("a")

    with pytest.raises(AttributeError, match="frozen"):
        entry.value = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del entry.value
    assert entry.value == "a"


def test_equality_and_hash_by_value() -> None:
    assert Entry("a", count=1) == Entry(value="a", count=1)
    assert Entry("a") != Entry("b")
    assert hash(Entry("a", count=1)) == hash(Entry(count=1, value="a"))
    assert len({Entry("a"), Entry("a"), Entry("b")}) == 2


def test_records_of_other_classes_differ() -> None:
    class Other(Record):
        value: str
        note: str = ""
        count: int = 0

    assert Entry("a") != Other("a")


def test_repr_lists_fields_in_order() -> None:
    assert repr(Entry("a", count=2)) == "Entry(value='a', note='', count=2)"


def test_repr_leaves_out_hidden_fields() -> None:
    assert repr(Secret("kim", "hunter2")) == "Secret(user='kim')"
    assert "not-shown" not in repr(Ami(secret="not-shown"))
    assert "not-shown" not in repr(Config(ami=Ami(secret="not-shown")))


def test_replace_copies_with_changes() -> None:
    entry = Entry("a", note="n")

    changed = record.replace(entry, count=5)

    assert changed == Entry("a", note="n", count=5)
    assert entry.count == 0


def test_replace_rejects_unknown_field() -> None:
    with pytest.raises(TypeError, match="no field 'colour'"):
        record.replace(Entry("a"), colour="red")


def test_fields_in_declaration_order() -> None:
    assert record.fields(Entry) == ("value", "note", "count")
    assert record.fields(Names) == ("owner", "other", "decoy")


def test_subclass_adds_fields_after_base() -> None:
    class Tagged(Entry):
        tag: str = "x"

    tagged = Tagged("a", tag="y")

    assert record.fields(Tagged) == ("value", "note", "count", "tag")
    assert tagged.value == "a"
    assert tagged.tag == "y"


def test_pickle_and_copy_keep_value() -> None:
    entry = Entry("a", count=2)

    assert pickle.loads(pickle.dumps(entry)) == entry
    assert copy.copy(entry) == entry
    assert copy.deepcopy(entry) == entry


def test_class_variable_is_not_field() -> None:
    class Counted(Record):
        limit: ClassVar[int] = 5
        value: str

    assert record.fields(Counted) == ("value",)
    assert Counted("a").value == "a"
    assert Counted.limit == 5


def test_mutable_default_raises() -> None:
    with pytest.raises(ValueError, match="mutable default list for field 'tags'"):

        class Tagged(Record):
            tags: list[str] = []  # noqa: RUF012


def test_required_field_after_default_raises() -> None:
    with pytest.raises(TypeError, match="'value' of Late has no default"):

        class Late(Record):
            note: str = ""
            value: str  # type: ignore[misc]


def test_annotated_again_without_default_is_required() -> None:
    # As mypy reads it, unlike a dataclass, which keeps the inherited default.
    class Narrowed(Record):
        value: str = ""

    class Required(Narrowed):
        value: str

    with pytest.raises(TypeError, match="missing fields: value"):
        Required()  # type: ignore[call-arg]


def test_match_by_position() -> None:
    match Entry("a", "b"):
        case Entry(value, note):
            matched = (value, note)
    assert matched == ("a", "b")
