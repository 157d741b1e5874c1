// The Customer groups map (CustCustomerGroup <-> msdyn_customergroups) in JavaScript: the
// same map as the Rust plugin `plugins/customer-groups`, giving the same outcomes byte
// for byte (tests/tests/languages.rs replays both).
//
// Built into a component of the world `dualwrite:table-map/map-plugin@0.1.0` by
// componentize-qjs (QuickJS), pinned in package.json; `cargo xtask plugins` runs it.
//
// Fields are ids (positions in the lists `describe` returns). Both sides are keyed by
// (company, group id); only companies the config lists are synced (empty: every one).
// ISSALESTAXINCLUDEDINPRICE (`no`/`yes`, any ASCII case) <-> boolean is a value map; the
// two terms of payment fields are lookups translated through the engine's links.

import host from "dualwrite:table-map/host@0.1.0";

const ERP_ENTITY = "CustCustomerGroup";
const CRM_ENTITY = "msdyn_customergroups";

// [name, kind, key] in field-id order; both sides use the same ids for the same line.
const FIELDS = {
  erp: [
    ["DATAAREAID", "text", true],
    ["CUSTOMERGROUPID", "text", true],
    ["DESCRIPTION", "text", false],
    ["ISSALESTAXINCLUDEDINPRICE", "text", false],
    ["PAYMENTTERMID", "text", false],
    ["CLEARINGPERIODPAYMENTTERMNAME", "text", false],
  ],
  crm: [
    ["msdyn_company", "text", true],
    ["msdyn_groupid", "text", true],
    ["msdyn_description", "text", false],
    ["msdyn_issalestaxincludedinprice", "boolean", false],
    ["msdyn_paymenttermid", "text", false],
    ["msdyn_clearingperiodpaymenttermname", "text", false],
  ],
};

const COMPANY = 0;
const CODE = 1;

// The lines after the key line (field 1 <-> field 1): [field id on both sides, carry].
const LINES = [
  [2, "copy"],
  [3, "yes-no"],
  [4, "lookup"],
  [5, "lookup"],
];

// The terms of payment map the lookups refer to, keyed by (company, name).
const TERMS = { what: "terms of payment", erp: "PaymentTerms", crm: "msdyn_paymentterms" };

const COMPANIES_DESCRIPTION =
  "Company (legal entity) codes this map syncs, compared ignoring ASCII case. Empty or absent: every company.";
const RESOLVE_LOOKUPS_DESCRIPTION =
  "Translate lookup fields through the links of the maps they refer to. When false, lookup values are copied as text (useful before those maps run).";

const CONFIG_SCHEMA =
  "{\n" +
  '  "$schema": "https://json-schema.org/draft/2020-12/schema",\n' +
  '  "title": "Map config",\n' +
  '  "type": "object",\n' +
  '  "properties": {\n' +
  '    "companies": {\n' +
  `      "description": ${JSON.stringify(COMPANIES_DESCRIPTION)},\n` +
  '      "type": "array",\n' +
  '      "items": { "type": "string", "minLength": 1 },\n' +
  '      "default": []\n' +
  "    },\n" +
  '    "resolve_lookups": {\n' +
  `      "description": ${JSON.stringify(RESOLVE_LOOKUPS_DESCRIPTION)},\n` +
  '      "type": "boolean",\n' +
  '      "default": true\n' +
  "    }\n" +
  "  },\n" +
  '  "additionalProperties": false\n' +
  "}";

// The config in force; replaced only by a successful `configure`.
let config = { companies: [], resolveLookups: true };

const KIND_LABELS = { text: "text", boolean: "a boolean" };

function asciiLower(text) {
  return text.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

function eqIgnoreAsciiCase(a, b) {
  return a.length === b.length && asciiLower(a) === asciiLower(b);
}

// A string as Rust's `{:?}` writes it: quoted, with quotes, backslashes and control
// characters escaped.
function quoted(text) {
  let out = '"';
  for (const c of text) {
    const code = c.codePointAt(0);
    if (c === '"') out += '\\"';
    else if (c === "\\") out += "\\\\";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (c === "\0") out += "\\0";
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0)) out += `\\u{${code.toString(16)}}`;
    else out += c;
  }
  return out + '"';
}

// A float as Rust's `{}` writes it: shortest round-trip digits, never an exponent.
function floatText(number) {
  if (Number.isNaN(number)) return "NaN";
  if (!Number.isFinite(number)) return number > 0 ? "inf" : "-inf";
  if (Object.is(number, -0)) return "-0";
  const text = String(number);
  const exponent = text.indexOf("e");
  if (exponent < 0) return text;
  const negative = text.startsWith("-");
  const mantissa = text.slice(negative ? 1 : 0, exponent);
  const power = Number(text.slice(exponent + 1));
  const [whole, fraction = ""] = mantissa.split(".");
  const digits = whole + fraction;
  const point = whole.length + power;
  let out;
  if (point <= 0) out = "0." + "0".repeat(-point) + digits;
  else if (point >= digits.length) out = digits + "0".repeat(point - digits.length);
  else out = digits.slice(0, point) + "." + digits.slice(point);
  return (negative ? "-" : "") + out;
}

// A value as messages show it: text quoted, numbers bare, others by kind.
function shown(value) {
  switch (value.tag) {
    case "null":
      return "null";
    case "boolean":
      return String(value.val);
    case "integer":
      return String(value.val);
    case "float":
      return floatText(value.val);
    case "decimal":
      return value.val;
    case "text":
      return quoted(value.val);
    default:
      return `(${value.tag})`;
  }
}

function failed(kind, message, field) {
  return { tag: "failed", val: { kind, message, field } };
}

function rejected(message, field) {
  return failed("rejected", message, field);
}

function wrongKind(side, id, value) {
  const [name, kind] = FIELDS[side][id];
  return rejected(`${name}: expected ${KIND_LABELS[kind]}, got ${value.tag} ${shown(value)}`, id);
}

const NULL = { tag: "null" };

function valueAt(change, id) {
  return id < change.row.length ? change.row[id] : NULL;
}

function touches(change, id) {
  return change.op !== "update" || change.changed.length === 0 || change.changed.includes(id);
}

// Thrown inside `transform` to end one change with its outcome.
class Stop {
  constructor(outcome) {
    this.outcome = outcome;
  }
}

function keyText(change, id) {
  const value = valueAt(change, id);
  if (value.tag === "text" && value.val.length > 0) return value;
  if (value.tag === "text" || value.tag === "null") {
    const name = FIELDS[change.source][id][0];
    throw new Stop(rejected(`${name}: key field is ${value.tag === "null" ? "null" : "empty"}`, id));
  }
  throw new Stop(wrongKind(change.source, id, value));
}

function copy(change, id, value) {
  if (value.tag === "null" || value.tag === FIELDS[change.source][id][1]) return value;
  throw new Stop(wrongKind(change.source, id, value));
}

function yesNo(change, id, value) {
  if (value.tag === "null") return value;
  if (change.source === "erp" && value.tag === "text") {
    if (eqIgnoreAsciiCase(value.val, "yes")) return { tag: "boolean", val: true };
    if (eqIgnoreAsciiCase(value.val, "no")) return { tag: "boolean", val: false };
    const name = FIELDS.erp[id][0];
    throw new Stop(rejected(`${name}: ${shown(value)} is not in the value map (no, yes)`, id));
  }
  if (change.source === "crm" && value.tag === "boolean") {
    return { tag: "text", val: value.val ? "yes" : "no" };
  }
  throw new Stop(wrongKind(change.source, id, value));
}

function lookup(change, id, value, company) {
  if (value.tag === "null" || (value.tag === "text" && value.val.length === 0)) return NULL;
  if (value.tag !== "text") throw new Stop(wrongKind(change.source, id, value));
  if (!config.resolveLookups) return value;
  const source = change.source;
  const entity = TERMS[source];
  const field = FIELDS[source][id][0];
  const what = `${TERMS.what} ${quoted(value.val)} of company ${company.val}`;
  let linked;
  try {
    linked = host.translateKey(source, entity, [company, value]);
  } catch (thrown) {
    const error = thrown && thrown.payload !== undefined ? thrown.payload : thrown;
    const message = `${field}: could not look up ${what} (${entity}): ${error.message}`;
    throw new Stop(failed(error.retryable ? "transient" : "rejected", message, id));
  }
  if (linked === null || linked === undefined) {
    throw new Stop(
      failed("dependency-missing", `${field}: ${what} (${entity} on the ${source} side) is not linked yet`, id),
    );
  }
  if (linked.length === 0) {
    throw new Stop(rejected(`${field}: the host translated ${what} (${entity}) to an empty key`, id));
  }
  return linked[linked.length - 1];
}

function transformOne(change) {
  const source = change.source;
  const company = keyText(change, COMPANY);
  const code = keyText(change, CODE);
  if (config.companies.length > 0 && !config.companies.some((c) => eqIgnoreAsciiCase(c, company.val))) {
    return { tag: "filtered" };
  }
  const fields = [
    { field: COMPANY, value: company },
    { field: CODE, value: code },
  ];
  if (change.op === "delete") {
    return { tag: "writes", val: [{ op: "delete", fields }] };
  }
  const full = change.op !== "update" || touches(change, COMPANY) || touches(change, CODE);
  for (const [id, carry] of LINES) {
    if (!full && !touches(change, id)) continue;
    const value = valueAt(change, id);
    let carried;
    if (carry === "copy") carried = copy(change, id, value);
    else if (carry === "yes-no") carried = yesNo(change, id, value);
    else carried = lookup(change, id, value, company);
    fields.push({ field: id, value: carried });
  }
  if (!full && fields.length === 2) return { tag: "writes", val: [] };
  return { tag: "writes", val: [{ op: "upsert", fields }] };
}

// What a JSON value is, for messages.
function jsonKind(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "boolean":
      return "a boolean";
    case "number":
      return "a number";
    case "string":
      return "a string";
    default:
      return "an object";
  }
}

function configError(path, message) {
  return { path, message };
}

// Compares strings by their UTF-8 bytes (the same as by code points), the order the
// Rust SDK checks options in. (QuickJS has no TextEncoder.)
function byteOrder(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

function parseConfig(text) {
  let document;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw configError("", `not valid JSON: ${error.message}`);
  }
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    throw configError("", `must be a JSON object, not ${jsonKind(document)}`);
  }
  const parsed = { companies: [], resolveLookups: true };
  for (const name of Object.keys(document).sort(byteOrder)) {
    const value = document[name];
    if (name === "companies") {
      if (!Array.isArray(value)) {
        throw configError("/companies", `must be an array of company codes, not ${jsonKind(value)}`);
      }
      value.forEach((item, index) => {
        if (typeof item !== "string") {
          throw configError(`/companies/${index}`, `a company code must be a string, not ${jsonKind(item)}`);
        }
        if (item.length === 0) throw configError(`/companies/${index}`, "a company code must not be empty");
      });
      parsed.companies = value;
    } else if (name === "resolve_lookups") {
      if (typeof value !== "boolean") {
        throw configError("/resolve_lookups", `must be true or false, not ${jsonKind(value)}`);
      }
      parsed.resolveLookups = value;
    } else {
      const pointer = "/" + name.replaceAll("~", "~0").replaceAll("/", "~1");
      throw configError(pointer, `unknown option ${quoted(name)}; the options are "companies" and "resolve_lookups"`);
    }
  }
  return parsed;
}

function entitySpec(side, entity) {
  return {
    entity,
    fields: FIELDS[side].map(([name, kind, key]) => ({ name, kind, key })),
  };
}

function mapping(id, transform) {
  return { erpField: FIELDS.erp[id][0], crmField: FIELDS.crm[id][0], direction: "both", transform };
}

export const plugin = {
  configure(text) {
    config = parseConfig(text);
  },

  describe() {
    return {
      name: "customer-groups",
      version: "1.0.0",
      summary:
        "Syncs customer groups between the ERP CustCustomerGroup entity and CRM msdyn_customergroups, both ways, per company.",
      erp: entitySpec("erp", ERP_ENTITY),
      crm: entitySpec("crm", CRM_ENTITY),
      mappings: [
        mapping(1, "copy"),
        mapping(2, "copy"),
        mapping(3, "value-map"),
        mapping(4, "lookup"),
        mapping(5, "lookup"),
      ],
      dependsOn: ["terms-of-payment", "legal-entities"],
      configSchema: CONFIG_SCHEMA,
    };
  },

  transform(batch) {
    return batch.map((change) => {
      try {
        return transformOne(change);
      } catch (stop) {
        if (stop instanceof Stop) return stop.outcome;
        throw stop;
      }
    });
  },
};
