"""The Customer groups map (CustCustomerGroup <-> msdyn_customergroups) in Python.

The same map as the Rust plugin `plugins/customer-groups`, giving the same outcomes byte
for byte (tests/tests/languages.rs replays both). Built into a component of the world
`dualwrite:table-map/map-plugin@0.1.0` by componentize-py (pinned in requirements.txt);
`cargo xtask plugins` runs it. The component imports WASI, which the host serves with a
context that grants nothing.

Fields are ids (positions in the lists `describe` returns). Both sides are keyed by
(company, group id); only companies the config lists are synced (empty: every one).
ISSALESTAXINCLUDEDINPRICE (`no`/`yes`, any ASCII case) <-> boolean is a value map; the two
terms of payment fields are lookups translated through the engine's links.
"""

import json
from dataclasses import dataclass, field as dataclass_field
from typing import List, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    ChangeOp,
    ConfigError,
    Descriptor,
    Direction,
    EntitySpec,
    ErrorKind,
    FieldMapping,
    FieldSpec,
    FieldValue,
    Outcome_Failed,
    Outcome_Filtered,
    Outcome_Writes,
    PluginError,
    Side,
    Value_Boolean,
    Value_Decimal,
    Value_Float,
    Value_Integer,
    Value_Null,
    Value_Text,
    ValueKind,
    Write,
    WriteOp,
)

ERP_ENTITY = "CustCustomerGroup"
CRM_ENTITY = "msdyn_customergroups"

# (name, kind, key) in field-id order; both sides use the same ids for the same line.
FIELDS = {
    Side.ERP: [
        ("DATAAREAID", ValueKind.TEXT, True),
        ("CUSTOMERGROUPID", ValueKind.TEXT, True),
        ("DESCRIPTION", ValueKind.TEXT, False),
        ("ISSALESTAXINCLUDEDINPRICE", ValueKind.TEXT, False),
        ("PAYMENTTERMID", ValueKind.TEXT, False),
        ("CLEARINGPERIODPAYMENTTERMNAME", ValueKind.TEXT, False),
    ],
    Side.CRM: [
        ("msdyn_company", ValueKind.TEXT, True),
        ("msdyn_groupid", ValueKind.TEXT, True),
        ("msdyn_description", ValueKind.TEXT, False),
        ("msdyn_issalestaxincludedinprice", ValueKind.BOOLEAN, False),
        ("msdyn_paymenttermid", ValueKind.TEXT, False),
        ("msdyn_clearingperiodpaymenttermname", ValueKind.TEXT, False),
    ],
}

COMPANY = 0
CODE = 1

# The lines after the key line (field 1 <-> field 1): (field id on both sides, carry).
LINES = [(2, "copy"), (3, "yes-no"), (4, "lookup"), (5, "lookup")]

# The terms of payment map the lookups refer to, keyed by (company, name).
TERMS_WHAT = "terms of payment"
TERMS_ENTITY = {Side.ERP: "PaymentTerms", Side.CRM: "msdyn_paymentterms"}
SIDE_NAME = {Side.ERP: "erp", Side.CRM: "crm"}

COMPANIES_DESCRIPTION = (
    "Company (legal entity) codes this map syncs, compared ignoring ASCII case. "
    "Empty or absent: every company."
)
RESOLVE_LOOKUPS_DESCRIPTION = (
    "Translate lookup fields through the links of the maps they refer to. When false, "
    "lookup values are copied as text (useful before those maps run)."
)

CONFIG_SCHEMA = (
    "{\n"
    '  "$schema": "https://json-schema.org/draft/2020-12/schema",\n'
    '  "title": "Map config",\n'
    '  "type": "object",\n'
    '  "properties": {\n'
    '    "companies": {\n'
    f'      "description": {json.dumps(COMPANIES_DESCRIPTION)},\n'
    '      "type": "array",\n'
    '      "items": { "type": "string", "minLength": 1 },\n'
    '      "default": []\n'
    "    },\n"
    '    "resolve_lookups": {\n'
    f'      "description": {json.dumps(RESOLVE_LOOKUPS_DESCRIPTION)},\n'
    '      "type": "boolean",\n'
    '      "default": true\n'
    "    }\n"
    "  },\n"
    '  "additionalProperties": false\n'
    "}"
)

KIND_LABELS = {ValueKind.TEXT: "text", ValueKind.BOOLEAN: "a boolean"}
KIND_NAMES = {
    "Value_Null": "null",
    "Value_Boolean": "boolean",
    "Value_Integer": "integer",
    "Value_Float": "float",
    "Value_Decimal": "decimal",
    "Value_Text": "text",
    "Value_Timestamp": "timestamp",
    "Value_Date": "date",
    "Value_Bytes": "bytes",
    "Value_Json": "json",
}

NULL = Value_Null()
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass
class Config:
    """The config in force: companies synced (empty: all), whether lookups are translated."""

    companies: List[str] = dataclass_field(default_factory=list)
    resolve_lookups: bool = True


def eq_ignore_ascii_case(a: str, b: str) -> bool:
    return len(a) == len(b) and a.translate(_ASCII_LOWER) == b.translate(_ASCII_LOWER)


def quoted(text: str) -> str:
    """A string as Rust's `{:?}` writes it: quoted, with quotes, backslashes and control
    characters escaped."""
    out = ['"']
    for c in text:
        code = ord(c)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\0":
            out.append("\\0")
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append("\\u{%x}" % code)
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def float_text(number: float) -> str:
    """A float as Rust's `{}` writes it: shortest round-trip digits, never an exponent."""
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "inf" if number > 0 else "-inf"
    text = repr(number)
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    if "e" in text:
        mantissa, exponent = text.split("e")
        power = int(exponent)
    else:
        mantissa, power = text, 0
    whole, _, fraction = mantissa.partition(".")
    if fraction == "0":
        fraction = ""
    digits = whole + fraction
    point = len(whole) + power
    if point <= 0:
        out = "0." + "0" * -point + digits
    elif point >= len(digits):
        out = digits + "0" * (point - len(digits))
    else:
        out = digits[:point] + "." + digits[point:]
    return ("-" if negative else "") + out


def kind_name(value) -> str:
    return KIND_NAMES[type(value).__name__]


def shown(value) -> str:
    """A value as messages show it: text quoted, numbers bare, others by kind."""
    if isinstance(value, Value_Null):
        return "null"
    if isinstance(value, Value_Boolean):
        return "true" if value.value else "false"
    if isinstance(value, Value_Integer):
        return str(value.value)
    if isinstance(value, Value_Float):
        return float_text(value.value)
    if isinstance(value, Value_Decimal):
        return value.value
    if isinstance(value, Value_Text):
        return quoted(value.value)
    return "(%s)" % kind_name(value)


class Stop(Exception):
    """Ends one change with its outcome."""

    def __init__(self, outcome):
        super().__init__()
        self.outcome = outcome


def failed(kind: ErrorKind, message: str, field: int) -> Stop:
    return Stop(Outcome_Failed(PluginError(kind, message, field)))


def rejected(message: str, field: int) -> Stop:
    return failed(ErrorKind.REJECTED, message, field)


def wrong_kind(side: Side, field: int, value) -> Stop:
    name, kind, _ = FIELDS[side][field]
    return rejected(
        "%s: expected %s, got %s %s" % (name, KIND_LABELS[kind], kind_name(value), shown(value)),
        field,
    )


def value_at(change, field: int):
    return change.row[field] if field < len(change.row) else NULL


def touches(change, field: int) -> bool:
    return change.op != ChangeOp.UPDATE or not change.changed or field in change.changed


def key_text(change, field: int):
    value = value_at(change, field)
    if isinstance(value, Value_Text) and value.value:
        return value
    if isinstance(value, (Value_Text, Value_Null)):
        name = FIELDS[change.source][field][0]
        state = "null" if isinstance(value, Value_Null) else "empty"
        raise rejected("%s: key field is %s" % (name, state), field)
    raise wrong_kind(change.source, field, value)


def copy(change, field: int, value):
    if isinstance(value, Value_Null):
        return value
    expected = FIELDS[change.source][field][1]
    if expected == ValueKind.TEXT and isinstance(value, Value_Text):
        return value
    raise wrong_kind(change.source, field, value)


def yes_no(change, field: int, value):
    if isinstance(value, Value_Null):
        return value
    if change.source == Side.ERP and isinstance(value, Value_Text):
        if eq_ignore_ascii_case(value.value, "yes"):
            return Value_Boolean(True)
        if eq_ignore_ascii_case(value.value, "no"):
            return Value_Boolean(False)
        name = FIELDS[Side.ERP][field][0]
        raise rejected("%s: %s is not in the value map (no, yes)" % (name, shown(value)), field)
    if change.source == Side.CRM and isinstance(value, Value_Boolean):
        return Value_Text("yes" if value.value else "no")
    raise wrong_kind(change.source, field, value)


def lookup(change, field: int, value, company, config: Config):
    if isinstance(value, Value_Null) or (isinstance(value, Value_Text) and not value.value):
        return NULL
    if not isinstance(value, Value_Text):
        raise wrong_kind(change.source, field, value)
    if not config.resolve_lookups:
        return value
    source = change.source
    entity = TERMS_ENTITY[source]
    name = FIELDS[source][field][0]
    what = "%s %s of company %s" % (TERMS_WHAT, quoted(value.value), company.value)
    try:
        linked = host.translate_key(source, entity, [company, value])
    except Err as error:
        problem = error.value
        message = "%s: could not look up %s (%s): %s" % (name, what, entity, problem.message)
        kind = ErrorKind.TRANSIENT if problem.retryable else ErrorKind.REJECTED
        raise failed(kind, message, field)
    if linked is None:
        raise failed(
            ErrorKind.DEPENDENCY_MISSING,
            "%s: %s (%s on the %s side) is not linked yet" % (name, what, entity, SIDE_NAME[source]),
            field,
        )
    if not linked:
        raise rejected("%s: the host translated %s (%s) to an empty key" % (name, what, entity), field)
    return linked[-1]


def transform_one(change, config: Config):
    company = key_text(change, COMPANY)
    code = key_text(change, CODE)
    if config.companies and not any(
        eq_ignore_ascii_case(listed, company.value) for listed in config.companies
    ):
        return Outcome_Filtered()
    fields = [FieldValue(COMPANY, company), FieldValue(CODE, code)]
    if change.op == ChangeOp.DELETE:
        return Outcome_Writes([Write(WriteOp.DELETE, fields)])
    full = change.op != ChangeOp.UPDATE or touches(change, COMPANY) or touches(change, CODE)
    for field, carry in LINES:
        if not full and not touches(change, field):
            continue
        value = value_at(change, field)
        if carry == "copy":
            carried = copy(change, field, value)
        elif carry == "yes-no":
            carried = yes_no(change, field, value)
        else:
            carried = lookup(change, field, value, company, config)
        fields.append(FieldValue(field, carried))
    if not full and len(fields) == 2:
        return Outcome_Writes([])
    return Outcome_Writes([Write(WriteOp.UPSERT, fields)])


def json_kind(value) -> str:
    """What a JSON value is, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _refuse_constant(name: str):
    raise ValueError("%s is not JSON" % name)


def parse_config(text: str) -> Config:
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        raise Err(ConfigError("", "not valid JSON: %s" % error))
    if not isinstance(document, dict):
        raise Err(ConfigError("", "must be a JSON object, not %s" % json_kind(document)))
    config = Config()
    # The Rust SDK checks options in the byte order of their names.
    for name in sorted(document, key=lambda name: name.encode("utf-8", "surrogatepass")):
        value = document[name]
        if name == "companies":
            if not isinstance(value, list):
                raise Err(
                    ConfigError(
                        "/companies",
                        "must be an array of company codes, not %s" % json_kind(value),
                    )
                )
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise Err(
                        ConfigError(
                            "/companies/%d" % index,
                            "a company code must be a string, not %s" % json_kind(item),
                        )
                    )
                if not item:
                    raise Err(
                        ConfigError("/companies/%d" % index, "a company code must not be empty")
                    )
            config.companies = value
        elif name == "resolve_lookups":
            if not isinstance(value, bool):
                raise Err(
                    ConfigError(
                        "/resolve_lookups", "must be true or false, not %s" % json_kind(value)
                    )
                )
            config.resolve_lookups = value
        else:
            pointer = "/" + name.replace("~", "~0").replace("/", "~1")
            raise Err(
                ConfigError(
                    pointer,
                    'unknown option %s; the options are "companies" and "resolve_lookups"'
                    % quoted(name),
                )
            )
    return config


def entity_spec(side: Side, entity: str) -> EntitySpec:
    return EntitySpec(entity, [FieldSpec(name, kind, key) for name, kind, key in FIELDS[side]])


def mapping(field: int, transform: str) -> FieldMapping:
    return FieldMapping(
        FIELDS[Side.ERP][field][0], FIELDS[Side.CRM][field][0], Direction.BOTH, transform
    )


_config = Config()


class Plugin(exports.Plugin):
    """The exported `plugin` interface; the module-level config is the only state."""

    def configure(self, config: str) -> None:
        global _config
        _config = parse_config(config)

    def describe(self) -> Descriptor:
        return Descriptor(
            name="customer-groups",
            version="1.0.0",
            summary="Syncs customer groups between the ERP CustCustomerGroup entity and CRM "
            "msdyn_customergroups, both ways, per company.",
            erp=entity_spec(Side.ERP, ERP_ENTITY),
            crm=entity_spec(Side.CRM, CRM_ENTITY),
            mappings=[
                mapping(1, "copy"),
                mapping(2, "copy"),
                mapping(3, "value-map"),
                mapping(4, "lookup"),
                mapping(5, "lookup"),
            ],
            depends_on=["terms-of-payment", "legal-entities"],
            config_schema=CONFIG_SCHEMA,
        )

    def transform(self, batch):
        outcomes = []
        for change in batch:
            try:
                outcomes.append(transform_one(change, _config))
            except Stop as stop:
                outcomes.append(stop.outcome)
        return outcomes
