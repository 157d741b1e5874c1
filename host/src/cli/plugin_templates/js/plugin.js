// {{name}}: a dualwrite map plugin in JavaScript, built into a Wasm component of the
// world `dualwrite:table-map/map-plugin@0.1.0` (wit/table-map.wit) by componentize-qjs
// (QuickJS; pinned in package.json and package-lock.json). See build.sh.
//
// The sample map links customers of the ERP (`Customers`) with accounts of the CRM
// (`accounts`), both ways:
//
//   ERP field (id)   CRM field (id)      how
//   ACCOUNTNUM (0)   accountnumber (0)   the key, copied
//   NAME (1)         name (1)            copied
//   BLOCKED (2)      isactive (2)        value map: `no` <-> true, `yes` <-> false
//
// Filter: accounts whose number starts with `TEST-` are test data and are not synced.
// Updates carry only the fields that changed (field-level writes); deletes delete the
// linked row. The map takes no options: its config must be `{}`.
//
// Change the entities, fields and rules to your own; `cases/` holds a change set with the
// outcomes this map gives (rerun `dualwrite replay ... --bless` after a change and review
// the diff). Host calls (`translateKey`, `readRow`, `log`) are imported from
// "dualwrite:table-map/host@0.1.0".

const NAME = "{{name}}";
const ERP_ENTITY = "Customers";
const CRM_ENTITY = "accounts";
// Field names in field-id order, both sides: the key, the name, the blocked flag.
const FIELDS = {
  erp: ["ACCOUNTNUM", "NAME", "BLOCKED"],
  crm: ["accountnumber", "name", "isactive"],
};
const KEY = 0;
const FULL_NAME = 1;
const BLOCKED = 2;
// Accounts whose number starts with this are not synced.
const TEST_PREFIX = "TEST-";

const CONFIG_SCHEMA = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Map config",
  "description": "This map takes no options.",
  "type": "object",
  "additionalProperties": false
}`;

const NULL = { tag: "null" };

// Ends one change with a rejected outcome.
class Rejected {
  constructor(side, field, problem) {
    this.outcome = {
      tag: "failed",
      val: { kind: "rejected", message: `${FIELDS[side][field]}: ${problem}`, field },
    };
  }
}

function wrongKind(side, field, expected, value) {
  return new Rejected(side, field, `expected ${expected}, got ${value.tag}`);
}

function trimJsonSpace(text) {
  return text.replace(/^[ \t\n\r]+|[ \t\n\r]+$/g, "");
}

function entitySpec(side, entity, blockedKind) {
  return {
    entity,
    fields: FIELDS[side].map((name, id) => ({
      name,
      kind: id === BLOCKED ? blockedKind : "text",
      key: id === KEY,
    })),
  };
}

function mapping(id, transform) {
  return { erpField: FIELDS.erp[id], crmField: FIELDS.crm[id], direction: "both", transform };
}

function transformOne(change) {
  const source = change.source;
  const at = (id) => (id < change.row.length ? change.row[id] : NULL);
  const key = at(KEY);
  if (key.tag === "null") throw new Rejected(source, KEY, "key field is null");
  if (key.tag !== "text") throw wrongKind(source, KEY, "text", key);
  if (key.val.length === 0) throw new Rejected(source, KEY, "key field is empty");
  if (key.val.startsWith(TEST_PREFIX)) return { tag: "filtered" };
  const fields = [{ field: KEY, value: key }];
  if (change.op === "delete") return { tag: "writes", val: [{ op: "delete", fields }] };
  // An update names the fields that changed; empty means "maybe all".
  const touched = (id) => change.op !== "update" || change.changed.length === 0 || change.changed.includes(id);
  const full = touched(KEY);
  if (full || touched(FULL_NAME)) {
    const value = at(FULL_NAME);
    if (value.tag !== "null" && value.tag !== "text") throw wrongKind(source, FULL_NAME, "text", value);
    fields.push({ field: FULL_NAME, value });
  }
  if (full || touched(BLOCKED)) {
    const value = at(BLOCKED);
    let carried;
    if (value.tag === "null") {
      carried = NULL;
    } else if (source === "erp") {
      // ERP BLOCKED no/yes (any ASCII case) -> CRM isactive true/false.
      if (value.tag !== "text") throw wrongKind(source, BLOCKED, "text", value);
      const lower = value.val.replace(/[A-Z]/g, (c) => c.toLowerCase());
      if (lower === "no") carried = { tag: "boolean", val: true };
      else if (lower === "yes") carried = { tag: "boolean", val: false };
      else throw new Rejected(source, BLOCKED, `"${value.val}" is not in the value map (no, yes)`);
    } else {
      // CRM isactive true/false -> ERP BLOCKED no/yes.
      if (value.tag !== "boolean") throw wrongKind(source, BLOCKED, "a boolean", value);
      carried = { tag: "text", val: value.val ? "no" : "yes" };
    }
    fields.push({ field: BLOCKED, value: carried });
  }
  // Only fields this map does not carry changed.
  if (fields.length === 1) return { tag: "writes", val: [] };
  return { tag: "writes", val: [{ op: "upsert", fields }] };
}

export const plugin = {
  configure(text) {
    const inner = trimJsonSpace(text);
    if (!(inner.startsWith("{") && inner.endsWith("}") && trimJsonSpace(inner.slice(1, -1)) === "")) {
      // A thrown value is the `config-error` of the result.
      throw { path: "", message: "this map takes no options; the config must be {}" };
    }
  },

  describe() {
    return {
      name: NAME,
      version: "0.1.0",
      summary: "Syncs ERP Customers with CRM accounts both ways (a template map).",
      erp: entitySpec("erp", ERP_ENTITY, "text"),
      crm: entitySpec("crm", CRM_ENTITY, "boolean"),
      mappings: [mapping(KEY, "copy"), mapping(FULL_NAME, "copy"), mapping(BLOCKED, "value-map")],
      dependsOn: [],
      configSchema: CONFIG_SCHEMA,
    };
  },

  transform(batch) {
    return batch.map((change) => {
      try {
        return transformOne(change);
      } catch (stop) {
        if (stop instanceof Rejected) return stop.outcome;
        throw stop;
      }
    });
  },
};
