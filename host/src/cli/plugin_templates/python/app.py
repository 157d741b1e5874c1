"""{{name}}: a dualwrite map plugin in Python.

Built into a Wasm component of the world `dualwrite:table-map/map-plugin@0.1.0`
(wit/table-map.wit) by componentize-py (CPython compiled to Wasm, with this module and the
WIT bindings baked in; pinned in requirements.txt). See build.sh.

The sample map links customers of the ERP (`Customers`) with accounts of the CRM
(`accounts`), both ways:

    ERP field (id)   CRM field (id)      how
    ACCOUNTNUM (0)   accountnumber (0)   the key, copied
    NAME (1)         name (1)            copied
    BLOCKED (2)      isactive (2)        value map: `no` <-> true, `yes` <-> false

Filter: accounts whose number starts with `TEST-` are test data and are not synced.
Updates carry only the fields that changed (field-level writes); deletes delete the linked
row. The map takes no options: its config must be `{}`.

Change the entities, fields and rules to your own; `cases/` holds a change set with the
outcomes this map gives (rerun `dualwrite replay ... --bless` after a change and review
the diff). Host calls are in `wit_world.imports.host`.
"""

from componentize_py_types import Err
from wit_world import exports
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
    Value_Null,
    Value_Text,
    ValueKind,
    Write,
    WriteOp,
)

NAME = "{{name}}"
ERP_ENTITY = "Customers"
CRM_ENTITY = "accounts"
# Field names in field-id order, both sides: the key, the name, the blocked flag.
FIELDS = {
    Side.ERP: ["ACCOUNTNUM", "NAME", "BLOCKED"],
    Side.CRM: ["accountnumber", "name", "isactive"],
}
KEY = 0
FULL_NAME = 1
BLOCKED = 2
# Accounts whose number starts with this are not synced.
TEST_PREFIX = "TEST-"

CONFIG_SCHEMA = """{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Map config",
  "description": "This map takes no options.",
  "type": "object",
  "additionalProperties": false
}"""

JSON_SPACE = " \t\n\r"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def kind_name(value) -> str:
    """The value's kind as the WIT names it (`Value_Text` -> `text`)."""
    return type(value).__name__[len("Value_"):].lower()


class Rejected(Exception):
    """Ends one change with a rejected outcome."""

    def __init__(self, side: Side, field: int, problem: str):
        super().__init__()
        message = "%s: %s" % (FIELDS[side][field], problem)
        self.outcome = Outcome_Failed(PluginError(ErrorKind.REJECTED, message, field))


def wrong_kind(side: Side, field: int, expected: str, value) -> Rejected:
    return Rejected(side, field, "expected %s, got %s" % (expected, kind_name(value)))


def transform_one(change):
    source = change.source

    def at(field: int):
        return change.row[field] if field < len(change.row) else Value_Null()

    key = at(KEY)
    if isinstance(key, Value_Null):
        raise Rejected(source, KEY, "key field is null")
    if not isinstance(key, Value_Text):
        raise wrong_kind(source, KEY, "text", key)
    if not key.value:
        raise Rejected(source, KEY, "key field is empty")
    if key.value.startswith(TEST_PREFIX):
        return Outcome_Filtered()
    fields = [FieldValue(KEY, key)]
    if change.op == ChangeOp.DELETE:
        return Outcome_Writes([Write(WriteOp.DELETE, fields)])

    # An update names the fields that changed; empty means "maybe all".
    def touched(field: int) -> bool:
        return change.op != ChangeOp.UPDATE or not change.changed or field in change.changed

    full = touched(KEY)
    if full or touched(FULL_NAME):
        value = at(FULL_NAME)
        if not isinstance(value, (Value_Null, Value_Text)):
            raise wrong_kind(source, FULL_NAME, "text", value)
        fields.append(FieldValue(FULL_NAME, value))
    if full or touched(BLOCKED):
        value = at(BLOCKED)
        if isinstance(value, Value_Null):
            carried = value
        elif source == Side.ERP:
            # ERP BLOCKED no/yes (any ASCII case) -> CRM isactive true/false.
            if not isinstance(value, Value_Text):
                raise wrong_kind(source, BLOCKED, "text", value)
            lower = value.value.translate(_ASCII_LOWER)
            if lower == "no":
                carried = Value_Boolean(True)
            elif lower == "yes":
                carried = Value_Boolean(False)
            else:
                raise Rejected(
                    source, BLOCKED, '"%s" is not in the value map (no, yes)' % value.value
                )
        else:
            # CRM isactive true/false -> ERP BLOCKED no/yes.
            if not isinstance(value, Value_Boolean):
                raise wrong_kind(source, BLOCKED, "a boolean", value)
            carried = Value_Text("no" if value.value else "yes")
        fields.append(FieldValue(BLOCKED, carried))
    if len(fields) == 1:
        # Only fields this map does not carry changed.
        return Outcome_Writes([])
    return Outcome_Writes([Write(WriteOp.UPSERT, fields)])


def entity_spec(side: Side, entity: str, blocked_kind: ValueKind) -> EntitySpec:
    return EntitySpec(
        entity,
        [
            FieldSpec(name, blocked_kind if field == BLOCKED else ValueKind.TEXT, field == KEY)
            for field, name in enumerate(FIELDS[side])
        ],
    )


def mapping(field: int, transform: str) -> FieldMapping:
    return FieldMapping(FIELDS[Side.ERP][field], FIELDS[Side.CRM][field], Direction.BOTH, transform)


class Plugin(exports.Plugin):
    """The exported `plugin` interface. The map keeps no state."""

    def configure(self, config: str) -> None:
        inner = config.strip(JSON_SPACE)
        if not (
            len(inner) >= 2
            and inner[0] == "{"
            and inner[-1] == "}"
            and not inner[1:-1].strip(JSON_SPACE)
        ):
            raise Err(ConfigError("", "this map takes no options; the config must be {}"))

    def describe(self) -> Descriptor:
        return Descriptor(
            name=NAME,
            version="0.1.0",
            summary="Syncs ERP Customers with CRM accounts both ways (a template map).",
            erp=entity_spec(Side.ERP, ERP_ENTITY, ValueKind.TEXT),
            crm=entity_spec(Side.CRM, CRM_ENTITY, ValueKind.BOOLEAN),
            mappings=[
                mapping(KEY, "copy"),
                mapping(FULL_NAME, "copy"),
                mapping(BLOCKED, "value-map"),
            ],
            depends_on=[],
            config_schema=CONFIG_SCHEMA,
        )

    def transform(self, batch):
        outcomes = []
        for change in batch:
            try:
                outcomes.append(transform_one(change))
            except Rejected as stop:
                outcomes.append(stop.outcome)
        return outcomes
