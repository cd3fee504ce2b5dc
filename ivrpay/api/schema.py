"""A small declarative layer: the API's models are dataclasses, declared once in ``models.py``;
this module checks a request against one and turns any of them into its JSON Schema.

Why our own layer and not pydantic or msgspec: the product's 422 lists every field error at once,
in the API's own words (the operator screen keys its Japanese messages on them, ``web/i18n.py``);
msgspec stops at the first error, and pydantic's words, bool-is-int and error paths would need a
translation layer larger than these checks. The checks no library has (a card number in any form in
any text, PostgreSQL's jsonb text rules, metadata bytes, fields that depend on the operation) would
be code of ours either way. And a create body is a dozen fields: a dict walk is as fast as either
(``parse_new_payment`` ~7 µs for a small body, ~30 µs with every field), with no new dependency.

* A request model's fields carry an :func:`arg` (a :class:`Kind` that checks one value and gives
  its schema, a default, whether it is required, and which variants of the model it applies to).
  :func:`parse` reads a JSON object into the dataclass or adds a :class:`FieldError` per problem.
* A response model is a plain dataclass; :func:`response_schema` reads its type hints
  (``Annotated[..., Json(...)]`` adds keywords such as an ``enum``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar, Union

from ivrpay.api.problems import FieldError
from ivrpay.card.scan import json_holds_card_number
from ivrpay.config import Settings

T = TypeVar("T")
Schema = dict[str, Any]

CARD_NUMBER_MESSAGE = "must not contain a card number (card data never passes through the API)"
IGNORED, REFUSED = "ignored", "refused"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    t = out.get("type")
    if isinstance(t, str):
        out["type"] = [t, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, a subclass of int: they are not numbers here.
    return isinstance(value, int) and not isinstance(value, bool)


def json_text_problem(value: Any) -> str | None:
    """Why a JSON value may not be stored: PostgreSQL jsonb refuses NUL and lone surrogates, and
    nothing may hold a card number, in any form (``ivrpay.card.scan`` says which)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            if "\x00" in v:
                return "must not contain NUL characters"
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return "must be valid Unicode text"
    if json_holds_card_number(value):
        return CARD_NUMBER_MESSAGE
    return None


def compact_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


# -- kinds: one value's check and its schema ----------------------------------------------------


class Invalid(Exception):
    """One field's error (its message is the API's answer)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


Setting = Callable[[Settings], Any]


def _resolve(value: Any, settings: Settings | None) -> Any:
    if callable(value):
        assert settings is not None, "a setting-dependent rule needs the settings"
        return value(settings)
    return value


class Kind:
    """A JSON value's rule. ``check`` returns the value to keep or raises :class:`Invalid`;
    ``check_type`` only its JSON type (for a field a variant ignores)."""

    json_type = "string"

    def check(self, value: Any, settings: Settings | None = None) -> Any:
        raise NotImplementedError

    def schema(self, settings: Settings) -> Schema:
        raise NotImplementedError

    def check_type(self, value: Any) -> None:
        ok = is_int(value) if self.json_type == "integer" else isinstance(value, str)
        if not ok:
            raise Invalid(f"must be {'an integer' if self.json_type == 'integer' else 'a string'}")

    def type_schema(self) -> Schema:
        return {"type": self.json_type}


@dataclasses.dataclass(frozen=True)
class Text(Kind):
    """A string matching ``pattern`` (or the pattern a setting gives) and fit to keep: see
    :func:`json_text_problem`. ``scan_first``: the keeping rules are checked before the pattern,
    for a pattern that would let a card number through with a vaguer message."""

    pattern: str | Setting
    message: str
    max_length: int | None = None
    scan_first: bool = False
    description: str | None = None

    def check(self, value: Any, settings: Settings | None = None) -> Any:
        if not isinstance(value, str):
            raise Invalid("must be a string")
        if self.scan_first and (why := json_text_problem(value)) is not None:
            raise Invalid(why)
        if not re.fullmatch(_resolve(self.pattern, settings), value):
            raise Invalid(self.message)
        if not self.scan_first and (why := json_text_problem(value)) is not None:
            raise Invalid(why)
        return value

    def schema(self, settings: Settings) -> Schema:
        out: Schema = {"type": "string", "pattern": _resolve(self.pattern, settings)}
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.description:
            out["description"] = self.description
        return out


@dataclasses.dataclass(frozen=True)
class Int(Kind):
    lo: int
    hi: int
    json_type = "integer"

    def check(self, value: Any, settings: Settings | None = None) -> Any:
        self.check_type(value)
        if not self.lo <= value <= self.hi:
            raise Invalid(f"must be between {self.lo} and {self.hi}")
        return int(value)

    def schema(self, settings: Settings) -> Schema:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}


@dataclasses.dataclass(frozen=True)
class Choice(Kind):
    """One of ``values`` (or of what a setting gives): all strings or all integers."""

    values: Sequence[str] | Sequence[int] | Setting
    message: str | None = None

    @property
    def json_type(self) -> str:  # type: ignore[override]
        values = self.values if not callable(self.values) else ("",)
        return "integer" if is_int(next(iter(values))) else "string"

    def check(self, value: Any, settings: Settings | None = None) -> Any:
        values = _resolve(self.values, settings)
        if not (is_int(value) or isinstance(value, str)) or value not in values:
            raise Invalid(self.message or f"must be one of {', '.join(map(str, values))}")
        # The declared value itself, never an equal one of another type.
        return next(v for v in values if v == value and type(v) is type(value))

    def schema(self, settings: Settings) -> Schema:
        return {"type": self.json_type, "enum": list(_resolve(self.values, settings))}


@dataclasses.dataclass(frozen=True)
class Bool(Kind):
    """true or false (never 0/1 or a string: a typo must not switch a mode)."""

    json_type = "boolean"

    def check(self, value: Any, settings: Settings | None = None) -> Any:
        self.check_type(value)
        return value

    def check_type(self, value: Any) -> None:
        if not isinstance(value, bool):
            raise Invalid("must be true or false")

    def schema(self, settings: Settings) -> Schema:
        return {"type": "boolean"}


@dataclasses.dataclass(frozen=True)
class JsonObject(Kind):
    """Any JSON object fit to keep, at most ``max_bytes`` as compact JSON."""

    max_bytes: int
    json_type = "object"

    def check(self, value: Any, settings: Settings | None = None) -> Any:
        if not isinstance(value, dict):
            raise Invalid("must be a JSON object")
        if (why := json_text_problem(value)) is not None:
            raise Invalid(why)
        if compact_size(value) > self.max_bytes:
            raise Invalid(f"must be at most {self.max_bytes} bytes as compact JSON")
        return value

    def schema(self, settings: Settings) -> Schema:
        return {
            "type": "object",
            "description": f"At most {self.max_bytes} bytes as compact JSON.",
        }


@dataclasses.dataclass(frozen=True)
class Nested(Kind):
    """An object of another request model; its fields' errors are named ``outer.inner``. Kept as
    a plain dict (what the store takes)."""

    model: type
    message: str
    json_type = "object"

    def check(self, value: Any, settings: Settings | None = None) -> Any:
        raise AssertionError("parse() reads nested models itself")

    def schema(self, settings: Settings) -> Schema:
        return ref(self.model.__name__)


# -- request models ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Arg:
    """How one field of a request model is read. ``variants``: the values of the model's variant
    field (``Model.VARIANT``) the field applies to (None: all); given for another variant it is
    ``elsewhere`` = IGNORED (its JSON type checked, its value dropped) or REFUSED."""

    kind: Kind
    required: bool | str = False  # a str: the message, formatted with {variant}
    default: Any = None
    description: str | None = None
    variants: tuple[str, ...] | None = None
    elsewhere: str = REFUSED


def arg(
    kind: Kind,
    *,
    required: bool | str = False,
    default: Any = None,
    description: str | None = None,
    variants: tuple[str, ...] | None = None,
    elsewhere: str = REFUSED,
) -> Any:
    """A request model's field (the dataclass default is the JSON default, or None)."""
    spec = Arg(kind, required, default, description, variants, elsewhere)
    if required and variants is None:
        return dataclasses.field(metadata={"arg": spec})
    plain = default if not callable(default) else None
    return dataclasses.field(default=plain, metadata={"arg": spec})


@dataclasses.dataclass(frozen=True)
class Needs:
    """``field`` is required when ``when`` = (other field, value) and refused otherwise."""

    field: str
    when: tuple[str, Any]
    missing: str
    extra: str


@dataclasses.dataclass(frozen=True)
class SumAtMost:
    """The fields' sum is at most ``limit`` (JSON Schema cannot say it: the models' description
    does); the error is named after ``on``."""

    fields: tuple[str, ...]
    limit: int
    on: str
    message: str


Rule = Needs | SumAtMost


@functools.cache
def args(model: type) -> tuple[tuple[str, Arg], ...]:
    """A request model's fields with their :class:`Arg`, in order (read once per model)."""
    return tuple(
        (f.name, f.metadata["arg"]) for f in dataclasses.fields(model) if "arg" in f.metadata
    )


_Plan = tuple[tuple[tuple[str, Arg], ...], frozenset[str], str | None, tuple[Rule, ...]]
_PLANS: dict[type, _Plan] = {}


def _plan(model: type) -> _Plan:
    """What :func:`parse` needs of a model, worked out on its first body."""
    plan = _PLANS.get(model)
    if plan is None:
        declared = args(model)
        names = frozenset(name for name, _ in declared)
        plan = (declared, names, getattr(model, "VARIANT", None), getattr(model, "RULES", ()))
        _PLANS[model] = plan
    return plan


_BAD = object()  # a field whose value was refused: rules that read it are skipped


def parse(
    model: type[T], body: Any, settings: Settings, errors: list[FieldError], *, path: str = ""
) -> T | None:
    """``body`` read into ``model``, or None with every problem appended to ``errors``.

    Explicit null counts as "not given", as generated clients send it.
    """
    where = path.rstrip(".") or "body"
    if not isinstance(body, dict):
        errors.append(FieldError(where, getattr(model, "NOT_OBJECT", "must be a JSON object")))
        return None
    start = len(errors)
    declared, names, variant_field, rules = _plan(model)
    for name in body:
        if name not in names:
            errors.append(FieldError(f"{path}{name}", "unknown field"))
    given = {k: v for k, v in body.items() if v is not None}

    def fail(name: str, message: str) -> None:
        errors.append(FieldError(f"{path}{name}", message))

    variant: str | None = None
    values: dict[str, Any] = {}
    if variant_field is not None:
        spec = next(a for n, a in declared if n == variant_field)
        try:
            variant = spec.kind.check(given.get(variant_field, spec.default), settings)
        except Invalid as exc:
            fail(variant_field, exc.message)
            values[variant_field] = _BAD
        else:
            values[variant_field] = variant

    for name, spec in declared:
        if name == variant_field:
            continue
        # An unknown variant: each given field is checked, none required or refused.
        applies = spec.variants is None or variant is None or variant in spec.variants
        if not applies:
            values[name] = None
            if name in given:
                if spec.elsewhere == IGNORED:
                    try:
                        spec.kind.check_type(given[name])
                    except Invalid as exc:
                        fail(name, exc.message)
                else:
                    fail(name, f"applies only to {' and '.join(spec.variants or ())}")
            continue
        if name not in given:
            required = spec.required and (spec.variants is None or variant is not None)
            if required:
                message = spec.required if isinstance(spec.required, str) else "is required"
                fail(name, message.format(variant=variant))
            values[name] = _resolve(spec.default, settings)
            continue
        value = given[name]
        if isinstance(spec.kind, Nested):
            inner = parse(spec.kind.model, value, settings, errors, path=f"{path}{name}.")
            values[name] = _BAD if inner is None else dataclasses.asdict(inner)  # type: ignore[call-overload]
            continue
        try:
            values[name] = spec.kind.check(value, settings)
        except Invalid as exc:
            fail(name, exc.message)
            values[name] = _BAD

    for rule in rules:
        _apply(rule, values, given, fail)

    if len(errors) > start:
        return None
    return model(**values)


def _apply(
    rule: Rule, values: dict[str, Any], given: dict[str, Any], fail: Callable[[str, str], None]
) -> None:
    if isinstance(rule, Needs):
        other, wanted = rule.when
        if values.get(other) is _BAD or values.get(rule.field) is _BAD:
            return
        if values.get(other) == wanted:
            if rule.field not in given:
                fail(rule.field, rule.missing)
        elif rule.field in given and values.get(other) is not None:
            fail(rule.field, rule.extra)
            values[rule.field] = _BAD
    else:
        parts: list[Any] = [values.get(name) for name in rule.fields]
        if all(is_int(v) for v in parts) and sum(parts) > rule.limit:
            fail(rule.on, rule.message)


def _present(schema: Schema) -> Schema:
    """A field that must be there and not null (null counts as not given)."""
    return {"type": schema["type"]} if "type" in schema else schema


def request_schema(model: type, settings: Settings) -> Schema:
    """The JSON Schema of a request model: the same declarations :func:`parse` reads."""
    declared = args(model)
    props: Schema = {}
    required: list[str] = []
    # Per set of variants: the fields that apply to them.
    groups: dict[tuple[str, ...], list[tuple[str, Arg]]] = {}
    for name, spec in declared:
        scoped_loose = spec.variants is not None and spec.elsewhere == IGNORED
        full = spec.kind.schema(settings)
        schema = spec.kind.type_schema() if scoped_loose else full
        if "$ref" not in schema:
            schema = dict(schema)
            if spec.default is not None:
                schema["default"] = _resolve(spec.default, settings)
            if spec.description:
                schema["description"] = spec.description
        if spec.required and spec.variants is None:
            required.append(name)
            props[name] = schema
        else:
            props[name] = nullable(schema)
        if spec.variants is not None:
            groups.setdefault(spec.variants, []).append((name, spec))
    out: Schema = {"type": "object", "additionalProperties": False}
    if model.__doc__ and not model.__doc__.startswith(model.__name__ + "("):
        out["description"] = " ".join(model.__doc__.split())
    out["properties"] = props
    out["required"] = required
    conditions = [_variant_condition(model, v, f, settings) for v, f in groups.items()]
    conditions += [_rule_condition(r) for r in getattr(model, "RULES", ()) if isinstance(r, Needs)]
    if conditions:
        out["allOf"] = conditions
    return out


def _variant_condition(
    model: type, variants: tuple[str, ...], fields: list[tuple[str, Arg]], settings: Settings
) -> Schema:
    variant_field: str = model.VARIANT  # type: ignore[attr-defined]
    spec = dict(args(model))[variant_field]
    every = list(_resolve(spec.kind.values, settings))  # type: ignore[attr-defined]
    applies: Schema = {"properties": {}}
    elsewhere: Schema = {"properties": {}}
    for name, arg_ in fields:
        full = arg_.kind.schema(settings)
        if arg_.required:
            applies.setdefault("required", []).append(name)
            applies["properties"][name] = _present(full) if arg_.elsewhere == REFUSED else full
        elif arg_.elsewhere == IGNORED:
            applies["properties"][name] = nullable(full)
        if arg_.elsewhere == REFUSED:
            elsewhere["properties"][name] = {"type": "null"}
    # The default variant applies when the field is absent or null: "if" then names the others.
    if spec.default in variants:
        others = [v for v in every if v not in variants]
        then, otherwise = elsewhere, applies
    else:
        others, then, otherwise = list(variants), applies, elsewhere
    cond: Schema = {
        "if": {"properties": {variant_field: {"enum": others}}, "required": [variant_field]},
        "then": then,
    }
    if otherwise["properties"] or otherwise.get("required"):
        cond["else"] = otherwise
    return cond


def _rule_condition(rule: Needs) -> Schema:
    other, wanted = rule.when
    return {
        "if": {"properties": {other: {"const": wanted}}, "required": [other]},
        "then": {"required": [rule.field], "properties": {rule.field: {"not": {"type": "null"}}}},
        "else": {"properties": {rule.field: {"type": "null"}}},
    }


# -- response models ---------------------------------------------------------------------------


class Json:
    """JSON Schema keywords for a field of a response model: ``Annotated[str, Json(enum=...)]``.
    (Hashed by identity, as ``typing`` needs of Annotated's metadata.)"""

    __slots__ = ("keywords",)

    def __init__(self, **keywords: Any) -> None:
        self.keywords: Schema = keywords


_SCALARS: dict[Any, Schema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    bool: {"type": "boolean"},
    float: {"type": "number"},
    datetime: {"type": "string", "format": "date-time"},
    Any: {},
}


def _type_schema(hint: Any) -> Schema:
    extra: Schema = {}
    if typing.get_origin(hint) is typing.Annotated:
        hint, *meta = typing.get_args(hint)
        for m in meta:
            if isinstance(m, Json):
                extra.update(m.keywords)
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(inner) == 1, hint
        return nullable(
            _type_schema(typing.Annotated[inner[0], Json(**extra)] if extra else inner[0])
        )
    if dataclasses.is_dataclass(hint):
        return ref(hint.__name__)  # type: ignore[union-attr]
    if origin is list:
        (item,) = typing.get_args(hint)
        return {"type": "array", "items": _type_schema(item), **extra}
    if origin is dict:
        _key, value = typing.get_args(hint)
        out: Schema = {"type": "object"}
        if value is not Any:
            out["additionalProperties"] = _type_schema(value)
        return {**out, **extra}
    if hint in _SCALARS:
        return {**_SCALARS[hint], **extra}
    raise TypeError(f"no JSON Schema for {hint!r}")


def response_schema(model: type, *, closed: bool = False) -> Schema:
    """A response model's JSON Schema: a field without a default is required (it may still be
    null); ``closed``: no other properties."""
    hints = typing.get_type_hints(model, include_extras=True)
    fields = dataclasses.fields(model)
    out: Schema = {"type": "object"}
    if closed:
        out["additionalProperties"] = False
    if model.__doc__ and not model.__doc__.startswith(model.__name__ + "("):
        out["description"] = " ".join(model.__doc__.split())
    out["properties"] = {f.name: _type_schema(hints[f.name]) for f in fields}
    out["required"] = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return out


def field_names(model: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(model))


# -- typed views of stored values --------------------------------------------------------------

_Converter = Callable[[Any], Any] | None
# Per model: (field, stored value -> field value, field value -> JSON value, default); a None
# converter takes the value as it is (the store has already made scalars the documented shape).
_Plan2 = tuple[tuple[str, _Converter, _Converter, Any], ...]
_VIEWS: dict[type, _Plan2] = {}


def _converters(hint: Any) -> tuple[_Converter, _Converter]:
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _converters(inner)  # None is let through by build() and plain()
    if dataclasses.is_dataclass(hint):
        model = typing.cast(type, hint)
        return (lambda v: build(model, v)), plain
    if typing.get_origin(hint) is list:
        into, out = _converters(typing.get_args(hint)[0])
        if into is not None and out is not None:
            return (lambda v: [into(x) for x in v]), (lambda v: [out(x) for x in v])
    return None, None


def _view_plan(model: type) -> _Plan2:
    plan = _VIEWS.get(model)
    if plan is None:
        hints = typing.get_type_hints(model, include_extras=True)
        plan = tuple(
            (
                f.name,
                *_converters(hints[f.name]),
                None if f.default is dataclasses.MISSING else f.default,
            )
            for f in dataclasses.fields(model)
        )
        _VIEWS[model] = plan
    return plan


def build(model: type[T], value: Any) -> T:
    """A response model from a stored mapping (a field it lacks takes the model's default, or
    None): the one place a row becomes the API's typed value."""
    get = value.get
    fields = {}
    for name, into, _out, default in _view_plan(model):
        v = get(name, default)
        fields[name] = v if into is None or v is None else into(v)
    # Every field is set here, so the frozen dataclass's __init__ (one object.__setattr__ per
    # field, a third of the time of a whole answer) is skipped: rows go out on every request.
    view = object.__new__(model)
    view.__dict__.update(fields)
    return view


def plain(view: Any) -> dict[str, Any]:
    """A model built by :func:`build` as JSON-ready dicts and lists, fields in declared order."""
    out: dict[str, Any] = {}
    for name, _into, to_json, _default in _view_plan(type(view)):
        v = getattr(view, name)
        out[name] = v if to_json is None or v is None else to_json(v)
    return out
