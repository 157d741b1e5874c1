// The Customer groups map (CustCustomerGroup <-> msdyn_customergroups) in C: the same map
// as the Rust plugin `plugins/customer-groups`, giving the same outcomes byte for byte
// (tests/tests/languages.rs replays both).
//
// `cargo xtask plugins` generates the bindings of the world
// `dualwrite:table-map/map-plugin@0.1.0` (map_plugin.h/.c, wit-bindgen-c), compiles them
// with this file by `zig cc` for wasm32 (pinned in requirements.txt) and wraps the module
// into a component. It imports nothing but the host interface.
//
// Memory: the export wrappers hand the arguments over (freed here) and free the returned
// values after the call (post-return), so every returned string or list is a fresh copy.
//
// Fields are ids (positions in the lists `describe` returns). Both sides are keyed by
// (company, group id); only companies the config lists are synced (empty: every one).
// ISSALESTAXINCLUDEDINPRICE (`no`/`yes`, any ASCII case) <-> boolean is a value map; the two
// terms of payment fields are lookups translated through the engine's links.

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map_plugin.h"

typedef map_plugin_string_t string_t;
typedef dualwrite_table_map_types_value_t value_t;
typedef dualwrite_table_map_types_change_t change_t;
typedef dualwrite_table_map_types_outcome_t outcome_t;
typedef dualwrite_table_map_types_field_value_t field_value_t;

enum { ERP = DUALWRITE_TABLE_MAP_TYPES_SIDE_ERP, CRM = DUALWRITE_TABLE_MAP_TYPES_SIDE_CRM };
enum { FIELD_COUNT = 6, COMPANY = 0, CODE = 1 };
enum carry { COPY, YES_NO, LOOKUP };

struct field_def {
  const char *name;
  uint8_t kind;
  bool key;
};

#define TEXT DUALWRITE_TABLE_MAP_TYPES_VALUE_KIND_TEXT
#define BOOLEAN DUALWRITE_TABLE_MAP_TYPES_VALUE_KIND_BOOLEAN

// Field-id order; both sides use the same ids for the same line.
static const struct field_def FIELDS[2][FIELD_COUNT] = {
    {
        {"DATAAREAID", TEXT, true},
        {"CUSTOMERGROUPID", TEXT, true},
        {"DESCRIPTION", TEXT, false},
        {"ISSALESTAXINCLUDEDINPRICE", TEXT, false},
        {"PAYMENTTERMID", TEXT, false},
        {"CLEARINGPERIODPAYMENTTERMNAME", TEXT, false},
    },
    {
        {"msdyn_company", TEXT, true},
        {"msdyn_groupid", TEXT, true},
        {"msdyn_description", TEXT, false},
        {"msdyn_issalestaxincludedinprice", BOOLEAN, false},
        {"msdyn_paymenttermid", TEXT, false},
        {"msdyn_clearingperiodpaymenttermname", TEXT, false},
    },
};

static const char *const ENTITIES[2] = {"CustCustomerGroup", "msdyn_customergroups"};
static const char *const SIDE_NAMES[2] = {"erp", "crm"};

// The lines after the key line (field 1 <-> field 1).
static const struct {
  uint32_t field;
  enum carry carry;
} LINES[] = {{2, COPY}, {3, YES_NO}, {4, LOOKUP}, {5, LOOKUP}};
#define LINE_COUNT (sizeof LINES / sizeof LINES[0])

// The terms of payment map the lookups refer to, keyed by (company, name).
static const char *const TERMS_WHAT = "terms of payment";
static const char *const TERMS_ENTITIES[2] = {"PaymentTerms", "msdyn_paymentterms"};

static const char CONFIG_SCHEMA[] =
    "{\n"
    "  \"$schema\": \"https://json-schema.org/draft/2020-12/schema\",\n"
    "  \"title\": \"Map config\",\n"
    "  \"type\": \"object\",\n"
    "  \"properties\": {\n"
    "    \"companies\": {\n"
    "      \"description\": \"Company (legal entity) codes this map syncs, compared ignoring "
    "ASCII case. Empty or absent: every company.\",\n"
    "      \"type\": \"array\",\n"
    "      \"items\": { \"type\": \"string\", \"minLength\": 1 },\n"
    "      \"default\": []\n"
    "    },\n"
    "    \"resolve_lookups\": {\n"
    "      \"description\": \"Translate lookup fields through the links of the maps they refer "
    "to. When false, lookup values are copied as text (useful before those maps run).\",\n"
    "      \"type\": \"boolean\",\n"
    "      \"default\": true\n"
    "    }\n"
    "  },\n"
    "  \"additionalProperties\": false\n"
    "}";

static const char *const KIND_NAMES[] = {"null", "boolean", "integer", "float", "decimal",
                                         "text", "timestamp", "date", "bytes", "json"};

// ---------------------------------------------------------------------------------------
// Growable byte buffers, for messages and decoded JSON strings.

typedef struct {
  char *data;
  size_t len;
  size_t cap;
} buffer_t;

static void buffer_reserve(buffer_t *buffer, size_t more) {
  if (buffer->len + more <= buffer->cap) return;
  size_t cap = buffer->cap ? buffer->cap * 2 : 64;
  while (cap < buffer->len + more) cap *= 2;
  buffer->data = realloc(buffer->data, cap);
  if (!buffer->data) abort();
  buffer->cap = cap;
}

static void buffer_add(buffer_t *buffer, const char *bytes, size_t len) {
  buffer_reserve(buffer, len);
  memcpy(buffer->data + buffer->len, bytes, len);
  buffer->len += len;
}

static void buffer_str(buffer_t *buffer, const char *text) { buffer_add(buffer, text, strlen(text)); }

static void buffer_printf(buffer_t *buffer, const char *format, ...) {
  va_list args;
  va_start(args, format);
  int len = vsnprintf(NULL, 0, format, args);
  va_end(args);
  if (len < 0) abort();
  // vsnprintf writes the terminating NUL too; it is not kept.
  buffer_reserve(buffer, (size_t)len + 1);
  va_start(args, format);
  vsnprintf(buffer->data + buffer->len, (size_t)len + 1, format, args);
  va_end(args);
  buffer->len += (size_t)len;
}

// The buffer's bytes as a WIT string it hands over (the buffer is left empty).
static string_t buffer_take(buffer_t *buffer) {
  string_t out = {(uint8_t *)buffer->data, buffer->len};
  if (buffer->len == 0) {
    free(buffer->data);
    out.ptr = NULL;
  }
  *buffer = (buffer_t){0};
  return out;
}

static string_t dup_cstr(const char *text) {
  string_t out;
  map_plugin_string_dup(&out, text);
  return out;
}

static string_t dup_string(const string_t *text) {
  string_t out;
  map_plugin_string_dup_n(&out, (const char *)text->ptr, text->len);
  return out;
}

// ---------------------------------------------------------------------------------------
// Text helpers, matching the Rust SDK's messages.

static unsigned char ascii_lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static bool eq_ignore_ascii_case(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len) {
  if (a_len != b_len) return false;
  for (size_t i = 0; i < a_len; i++) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

// A string as Rust's `{:?}` writes it: quoted, with quotes, backslashes and control
// characters (C0, DEL, C1) escaped.
static void buffer_quoted(buffer_t *out, const uint8_t *text, size_t len) {
  buffer_str(out, "\"");
  for (size_t i = 0; i < len; i++) {
    unsigned char c = text[i];
    switch (c) {
    case '"': buffer_str(out, "\\\""); continue;
    case '\\': buffer_str(out, "\\\\"); continue;
    case '\n': buffer_str(out, "\\n"); continue;
    case '\r': buffer_str(out, "\\r"); continue;
    case '\t': buffer_str(out, "\\t"); continue;
    case '\0': buffer_str(out, "\\0"); continue;
    default: break;
    }
    if (c < 0x20 || c == 0x7f) {
      buffer_printf(out, "\\u{%x}", c);
    } else if (c == 0xc2 && i + 1 < len && text[i + 1] >= 0x80 && text[i + 1] < 0xa0) {
      buffer_printf(out, "\\u{%x}", text[i + 1]);
      i++;
    } else {
      buffer_add(out, (const char *)&text[i], 1);
    }
  }
  buffer_str(out, "\"");
}

// A float as Rust's `{}` writes it: shortest round-trip digits, never an exponent.
static void buffer_float(buffer_t *out, double number) {
  if (isnan(number)) { buffer_str(out, "NaN"); return; }
  if (isinf(number)) { buffer_str(out, number > 0 ? "inf" : "-inf"); return; }
  char text[40];
  for (int precision = 0; precision < 17; precision++) {
    snprintf(text, sizeof text, "%.*e", precision, number);
    if (strtod(text, NULL) == number) break;
  }
  // text is [-]D[.DDD]e[+-]XX
  const char *p = text;
  if (*p == '-') { buffer_str(out, "-"); p++; }
  char digits[24];
  size_t count = 0;
  for (; *p != 'e'; p++) {
    if (*p != '.') digits[count++] = *p;
  }
  int point = atoi(p + 1) + 1;
  while (count > 1 && digits[count - 1] == '0') count--;
  if (count == 1 && digits[0] == '0') { buffer_str(out, "0"); return; }
  if (point <= 0) {
    buffer_str(out, "0.");
    for (int i = 0; i < -point; i++) buffer_str(out, "0");
    buffer_add(out, digits, count);
  } else if ((size_t)point >= count) {
    buffer_add(out, digits, count);
    for (size_t i = count; i < (size_t)point; i++) buffer_str(out, "0");
  } else {
    buffer_add(out, digits, (size_t)point);
    buffer_str(out, ".");
    buffer_add(out, digits + point, count - (size_t)point);
  }
}

// A value as messages show it: text quoted, numbers bare, others by kind.
static void buffer_shown(buffer_t *out, const value_t *value) {
  switch (value->tag) {
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_NULL: buffer_str(out, "null"); break;
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_BOOLEAN:
    buffer_str(out, value->val.boolean ? "true" : "false");
    break;
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_INTEGER:
    buffer_printf(out, "%lld", (long long)value->val.integer);
    break;
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_FLOAT: buffer_float(out, value->val.float_); break;
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_DECIMAL:
    buffer_add(out, (const char *)value->val.decimal.ptr, value->val.decimal.len);
    break;
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_TEXT:
    buffer_quoted(out, value->val.text.ptr, value->val.text.len);
    break;
  default: buffer_printf(out, "(%s)", KIND_NAMES[value->tag]); break;
  }
}

// ---------------------------------------------------------------------------------------
// Values and outcomes.

static const value_t NULL_VALUE = {.tag = DUALWRITE_TABLE_MAP_TYPES_VALUE_NULL};

// A deep copy of a value (the output must not share memory with the input).
static value_t value_copy(const value_t *value) {
  value_t out = *value;
  switch (value->tag) {
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_DECIMAL:
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_TEXT:
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_JSON:
    // decimal, text and json share the string layout of the union.
    out.val.text = dup_string(&value->val.text);
    break;
  case DUALWRITE_TABLE_MAP_TYPES_VALUE_BYTES:
    out.val.bytes.ptr = value->val.bytes.len ? malloc(value->val.bytes.len) : NULL;
    if (value->val.bytes.len) memcpy(out.val.bytes.ptr, value->val.bytes.ptr, value->val.bytes.len);
    break;
  default: break;
  }
  return out;
}

static value_t text_value(const char *text) {
  value_t out = {.tag = DUALWRITE_TABLE_MAP_TYPES_VALUE_TEXT};
  out.val.text = dup_cstr(text);
  return out;
}

static value_t bool_value(bool flag) {
  value_t out = {.tag = DUALWRITE_TABLE_MAP_TYPES_VALUE_BOOLEAN};
  out.val.boolean = flag;
  return out;
}

static outcome_t failed(uint8_t kind, buffer_t *message, uint32_t field) {
  outcome_t out = {.tag = DUALWRITE_TABLE_MAP_TYPES_OUTCOME_FAILED};
  out.val.failed.kind = kind;
  out.val.failed.message = buffer_take(message);
  out.val.failed.field.is_some = true;
  out.val.failed.field.val = field;
  return out;
}

static outcome_t rejected(buffer_t *message, uint32_t field) {
  return failed(DUALWRITE_TABLE_MAP_TYPES_ERROR_KIND_REJECTED, message, field);
}

static outcome_t wrong_kind(uint8_t side, uint32_t field, const value_t *value) {
  buffer_t message = {0};
  const struct field_def *def = &FIELDS[side][field];
  buffer_printf(&message, "%s: expected %s, got %s ", def->name,
                def->kind == BOOLEAN ? "a boolean" : "text", KIND_NAMES[value->tag]);
  buffer_shown(&message, value);
  return rejected(&message, field);
}

static const value_t *value_at(const change_t *change, uint32_t field) {
  return field < change->row.len ? &change->row.ptr[field] : &NULL_VALUE;
}

static bool touches(const change_t *change, uint32_t field) {
  if (change->op != DUALWRITE_TABLE_MAP_TYPES_CHANGE_OP_UPDATE || change->changed.len == 0) {
    return true;
  }
  for (size_t i = 0; i < change->changed.len; i++) {
    if (change->changed.ptr[i] == field) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// The config.

static struct {
  string_t *companies;
  size_t company_count;
  bool resolve_lookups;
} config = {NULL, 0, true};

static bool syncs_company(const string_t *company) {
  if (config.company_count == 0) return true;
  for (size_t i = 0; i < config.company_count; i++) {
    if (eq_ignore_ascii_case(config.companies[i].ptr, config.companies[i].len, company->ptr,
                             company->len)) {
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// The transform of one change. Each step returns false with *outcome set when the change
// ends there.

static bool key_text(const change_t *change, uint32_t field, const value_t **key, outcome_t *outcome) {
  const value_t *value = value_at(change, field);
  if (value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_TEXT && value->val.text.len > 0) {
    *key = value;
    return true;
  }
  if (value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_TEXT || value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_NULL) {
    buffer_t message = {0};
    buffer_printf(&message, "%s: key field is %s", FIELDS[change->source][field].name,
                  value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_NULL ? "null" : "empty");
    *outcome = rejected(&message, field);
    return false;
  }
  *outcome = wrong_kind(change->source, field, value);
  return false;
}

static bool carry_copy(const change_t *change, uint32_t field, value_t *out, outcome_t *outcome) {
  const value_t *value = value_at(change, field);
  bool text = FIELDS[change->source][field].kind == TEXT;
  if (value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_NULL ||
      (text && value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_TEXT)) {
    *out = value_copy(value);
    return true;
  }
  *outcome = wrong_kind(change->source, field, value);
  return false;
}

static bool carry_yes_no(const change_t *change, uint32_t field, value_t *out, outcome_t *outcome) {
  const value_t *value = value_at(change, field);
  if (value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_NULL) {
    *out = NULL_VALUE;
    return true;
  }
  if (change->source == ERP && value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_TEXT) {
    const string_t *text = &value->val.text;
    if (eq_ignore_ascii_case(text->ptr, text->len, (const uint8_t *)"yes", 3)) {
      *out = bool_value(true);
      return true;
    }
    if (eq_ignore_ascii_case(text->ptr, text->len, (const uint8_t *)"no", 2)) {
      *out = bool_value(false);
      return true;
    }
    buffer_t message = {0};
    buffer_printf(&message, "%s: ", FIELDS[ERP][field].name);
    buffer_shown(&message, value);
    buffer_str(&message, " is not in the value map (no, yes)");
    *outcome = rejected(&message, field);
    return false;
  }
  if (change->source == CRM && value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_BOOLEAN) {
    *out = text_value(value->val.boolean ? "yes" : "no");
    return true;
  }
  *outcome = wrong_kind(change->source, field, value);
  return false;
}

// `terms of payment "Net30" of company USMF`
static void buffer_what(buffer_t *out, const value_t *value, const value_t *company) {
  buffer_printf(out, "%s ", TERMS_WHAT);
  buffer_quoted(out, value->val.text.ptr, value->val.text.len);
  buffer_str(out, " of company ");
  buffer_add(out, (const char *)company->val.text.ptr, company->val.text.len);
}

static bool carry_lookup(const change_t *change, uint32_t field, const value_t *company,
                         value_t *out, outcome_t *outcome) {
  const value_t *value = value_at(change, field);
  if (value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_NULL ||
      (value->tag == DUALWRITE_TABLE_MAP_TYPES_VALUE_TEXT && value->val.text.len == 0)) {
    *out = NULL_VALUE;
    return true;
  }
  if (value->tag != DUALWRITE_TABLE_MAP_TYPES_VALUE_TEXT) {
    *outcome = wrong_kind(change->source, field, value);
    return false;
  }
  if (!config.resolve_lookups) {
    *out = value_copy(value);
    return true;
  }
  uint8_t source = change->source;
  const char *entity = TERMS_ENTITIES[source];
  const char *name = FIELDS[source][field].name;
  value_t key_values[2] = {*company, *value};
  dualwrite_table_map_host_list_value_t key = {key_values, 2};
  string_t entity_string = {(uint8_t *)entity, strlen(entity)};
  dualwrite_table_map_host_option_list_value_t linked;
  dualwrite_table_map_host_host_error_t error;
  buffer_t message = {0};
  if (!dualwrite_table_map_host_translate_key(source, &entity_string, &key, &linked, &error)) {
    buffer_printf(&message, "%s: could not look up ", name);
    buffer_what(&message, value, company);
    buffer_printf(&message, " (%s): ", entity);
    buffer_add(&message, (const char *)error.message.ptr, error.message.len);
    uint8_t kind = error.retryable ? DUALWRITE_TABLE_MAP_TYPES_ERROR_KIND_TRANSIENT
                                   : DUALWRITE_TABLE_MAP_TYPES_ERROR_KIND_REJECTED;
    dualwrite_table_map_host_host_error_free(&error);
    *outcome = failed(kind, &message, field);
    return false;
  }
  if (!linked.is_some) {
    buffer_printf(&message, "%s: ", name);
    buffer_what(&message, value, company);
    buffer_printf(&message, " (%s on the %s side) is not linked yet", entity, SIDE_NAMES[source]);
    *outcome = failed(DUALWRITE_TABLE_MAP_TYPES_ERROR_KIND_DEPENDENCY_MISSING, &message, field);
    return false;
  }
  if (linked.val.len == 0) {
    buffer_printf(&message, "%s: the host translated ", name);
    buffer_what(&message, value, company);
    buffer_printf(&message, " (%s) to an empty key", entity);
    dualwrite_table_map_host_option_list_value_free(&linked);
    *outcome = rejected(&message, field);
    return false;
  }
  *out = value_copy(&linked.val.ptr[linked.val.len - 1]);
  dualwrite_table_map_host_option_list_value_free(&linked);
  return true;
}

static void free_fields(field_value_t *fields, size_t count) {
  for (size_t i = 0; i < count; i++) dualwrite_table_map_types_value_free(&fields[i].value);
  free(fields);
}

static outcome_t transform_one(const change_t *change) {
  outcome_t outcome;
  const value_t *company;
  const value_t *code;
  if (!key_text(change, COMPANY, &company, &outcome)) return outcome;
  if (!key_text(change, CODE, &code, &outcome)) return outcome;
  if (!syncs_company(&company->val.text)) {
    return (outcome_t){.tag = DUALWRITE_TABLE_MAP_TYPES_OUTCOME_FILTERED};
  }
  field_value_t *fields = malloc(sizeof(field_value_t) * (2 + LINE_COUNT));
  if (!fields) abort();
  fields[0] = (field_value_t){COMPANY, value_copy(company)};
  fields[1] = (field_value_t){CODE, value_copy(code)};
  size_t count = 2;
  uint8_t op = DUALWRITE_TABLE_MAP_TYPES_WRITE_OP_UPSERT;
  if (change->op == DUALWRITE_TABLE_MAP_TYPES_CHANGE_OP_DELETE) {
    op = DUALWRITE_TABLE_MAP_TYPES_WRITE_OP_DELETE;
  } else {
    bool full = change->op != DUALWRITE_TABLE_MAP_TYPES_CHANGE_OP_UPDATE ||
                touches(change, COMPANY) || touches(change, CODE);
    for (size_t i = 0; i < LINE_COUNT; i++) {
      uint32_t field = LINES[i].field;
      if (!full && !touches(change, field)) continue;
      value_t carried;
      bool ok;
      switch (LINES[i].carry) {
      case COPY: ok = carry_copy(change, field, &carried, &outcome); break;
      case YES_NO: ok = carry_yes_no(change, field, &carried, &outcome); break;
      default: ok = carry_lookup(change, field, company, &carried, &outcome); break;
      }
      if (!ok) {
        free_fields(fields, count);
        return outcome;
      }
      fields[count++] = (field_value_t){field, carried};
    }
    if (!full && count == 2) {
      free_fields(fields, count);
      return (outcome_t){.tag = DUALWRITE_TABLE_MAP_TYPES_OUTCOME_WRITES};
    }
  }
  dualwrite_table_map_types_write_t *write = malloc(sizeof *write);
  if (!write) abort();
  write->op = op;
  write->fields.ptr = fields;
  write->fields.len = count;
  outcome.tag = DUALWRITE_TABLE_MAP_TYPES_OUTCOME_WRITES;
  outcome.val.writes.ptr = write;
  outcome.val.writes.len = 1;
  return outcome;
}

void exports_dualwrite_table_map_plugin_transform(exports_dualwrite_table_map_plugin_list_change_t *batch,
                                                  exports_dualwrite_table_map_plugin_list_outcome_t *ret) {
  ret->len = batch->len;
  ret->ptr = batch->len ? malloc(sizeof(outcome_t) * batch->len) : NULL;
  if (batch->len && !ret->ptr) abort();
  for (size_t i = 0; i < batch->len; i++) ret->ptr[i] = transform_one(&batch->ptr[i]);
  exports_dualwrite_table_map_plugin_list_change_free(batch);
}

// ---------------------------------------------------------------------------------------
// A small JSON reader for the config: validates the whole document (RFC 8259, as strict
// as serde_json about control characters and lone surrogates) and keeps what the config
// needs.

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

typedef struct json json_t;
typedef struct {
  buffer_t name;
  json_t *value;
} json_member_t;

struct json {
  enum json_type type;
  bool boolean;
  buffer_t text;          // JSON_STRING
  json_t **items;         // JSON_ARRAY
  json_member_t *members; // JSON_OBJECT
  size_t count;
};

typedef struct {
  const uint8_t *p;
  const uint8_t *end;
  int depth;
} reader_t;

static void json_free(json_t *value) {
  if (!value) return;
  free(value->text.data);
  for (size_t i = 0; i < value->count; i++) {
    if (value->type == JSON_ARRAY) json_free(value->items[i]);
    if (value->type == JSON_OBJECT) {
      free(value->members[i].name.data);
      json_free(value->members[i].value);
    }
  }
  free(value->items);
  free(value->members);
  free(value);
}

static void skip_space(reader_t *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static bool literal(reader_t *r, const char *word) {
  size_t len = strlen(word);
  if ((size_t)(r->end - r->p) < len || memcmp(r->p, word, len) != 0) return false;
  r->p += len;
  return true;
}

static int hex4(reader_t *r) {
  if (r->end - r->p < 4) return -1;
  int code = 0;
  for (int i = 0; i < 4; i++) {
    uint8_t c = *r->p++;
    code <<= 4;
    if (c >= '0' && c <= '9') code |= c - '0';
    else if (c >= 'a' && c <= 'f') code |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') code |= c - 'A' + 10;
    else return -1;
  }
  return code;
}

static void utf8_add(buffer_t *out, uint32_t code) {
  char bytes[4];
  size_t len;
  if (code < 0x80) { bytes[0] = (char)code; len = 1; }
  else if (code < 0x800) { bytes[0] = (char)(0xc0 | (code >> 6)); bytes[1] = (char)(0x80 | (code & 0x3f)); len = 2; }
  else if (code < 0x10000) {
    bytes[0] = (char)(0xe0 | (code >> 12)); bytes[1] = (char)(0x80 | ((code >> 6) & 0x3f));
    bytes[2] = (char)(0x80 | (code & 0x3f)); len = 3;
  } else {
    bytes[0] = (char)(0xf0 | (code >> 18)); bytes[1] = (char)(0x80 | ((code >> 12) & 0x3f));
    bytes[2] = (char)(0x80 | ((code >> 6) & 0x3f)); bytes[3] = (char)(0x80 | (code & 0x3f)); len = 4;
  }
  buffer_add(out, bytes, len);
}

// Reads a string after its opening quote into `out`.
static bool read_string(reader_t *r, buffer_t *out) {
  while (r->p < r->end) {
    uint8_t c = *r->p++;
    if (c == '"') return true;
    if (c < 0x20) return false;
    if (c != '\\') { buffer_add(out, (const char *)&c, 1); continue; }
    if (r->p >= r->end) return false;
    c = *r->p++;
    switch (c) {
    case '"': case '\\': case '/': buffer_add(out, (const char *)&c, 1); break;
    case 'b': buffer_str(out, "\b"); break;
    case 'f': buffer_str(out, "\f"); break;
    case 'n': buffer_str(out, "\n"); break;
    case 'r': buffer_str(out, "\r"); break;
    case 't': buffer_str(out, "\t"); break;
    case 'u': {
      int code = hex4(r);
      if (code < 0 || (code >= 0xdc00 && code < 0xe000)) return false;
      if (code >= 0xd800 && code < 0xdc00) {
        if (!literal(r, "\\u")) return false;
        int low = hex4(r);
        if (low < 0xdc00 || low >= 0xe000) return false;
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
      }
      utf8_add(out, (uint32_t)code);
      break;
    }
    default: return false;
    }
  }
  return false;
}

static bool digits(reader_t *r) {
  const uint8_t *start = r->p;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
  return r->p > start;
}

static json_t *read_value(reader_t *r);

static json_t *new_json(enum json_type type) {
  json_t *value = calloc(1, sizeof *value);
  if (!value) abort();
  value->type = type;
  return value;
}

static json_t *read_value(reader_t *r) {
  skip_space(r);
  if (r->p >= r->end) return NULL;
  uint8_t c = *r->p;
  if (literal(r, "null")) return new_json(JSON_NULL);
  if (literal(r, "true")) { json_t *v = new_json(JSON_BOOL); v->boolean = true; return v; }
  if (literal(r, "false")) return new_json(JSON_BOOL);
  if (c == '-' || (c >= '0' && c <= '9')) {
    if (c == '-') r->p++;
    if (r->p < r->end && *r->p == '0') r->p++;
    else if (!digits(r)) return NULL;
    if (r->p < r->end && *r->p == '.') { r->p++; if (!digits(r)) return NULL; }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
      r->p++;
      if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
      if (!digits(r)) return NULL;
    }
    return new_json(JSON_NUMBER);
  }
  if (c == '"') {
    r->p++;
    json_t *v = new_json(JSON_STRING);
    if (!read_string(r, &v->text)) { json_free(v); return NULL; }
    return v;
  }
  if (c != '[' && c != '{') return NULL;
  if (++r->depth > 128) return NULL;
  r->p++;
  bool object = c == '{';
  json_t *v = new_json(object ? JSON_OBJECT : JSON_ARRAY);
  skip_space(r);
  if (r->p < r->end && *r->p == (object ? '}' : ']')) { r->p++; r->depth--; return v; }
  for (;;) {
    buffer_t name = {0};
    if (object) {
      skip_space(r);
      if (r->p >= r->end || *r->p != '"') { json_free(v); return NULL; }
      r->p++;
      if (!read_string(r, &name)) { free(name.data); json_free(v); return NULL; }
      skip_space(r);
      if (r->p >= r->end || *r->p != ':') { free(name.data); json_free(v); return NULL; }
      r->p++;
    }
    json_t *item = read_value(r);
    if (!item) { free(name.data); json_free(v); return NULL; }
    if (object) {
      v->members = realloc(v->members, sizeof(json_member_t) * (v->count + 1));
      if (!v->members) abort();
      v->members[v->count++] = (json_member_t){name, item};
    } else {
      v->items = realloc(v->items, sizeof(json_t *) * (v->count + 1));
      if (!v->items) abort();
      v->items[v->count++] = item;
    }
    skip_space(r);
    if (r->p < r->end && *r->p == ',') { r->p++; continue; }
    if (r->p < r->end && *r->p == (object ? '}' : ']')) { r->p++; r->depth--; return v; }
    json_free(v);
    return NULL;
  }
}

static const char *json_kind(const json_t *value) {
  switch (value->type) {
  case JSON_NULL: return "null";
  case JSON_BOOL: return "a boolean";
  case JSON_NUMBER: return "a number";
  case JSON_STRING: return "a string";
  case JSON_ARRAY: return "an array";
  default: return "an object";
  }
}

static int byte_compare(const buffer_t *a, const buffer_t *b) {
  size_t len = a->len < b->len ? a->len : b->len;
  int order = len ? memcmp(a->data, b->data, len) : 0;
  if (order != 0) return order;
  return a->len < b->len ? -1 : a->len > b->len;
}

static bool config_error(exports_dualwrite_table_map_plugin_config_error_t *err, buffer_t *path, buffer_t *message) {
  err->path = buffer_take(path);
  err->message = buffer_take(message);
  return false;
}

// Checks one option (the last occurrence of its name wins, as in serde_json).
static bool check_option(const buffer_t *name, const json_t *value, string_t **companies, size_t *company_count,
                         bool *resolve_lookups, exports_dualwrite_table_map_plugin_config_error_t *err) {
  buffer_t path = {0};
  buffer_t message = {0};
  if (name->len == 9 && memcmp(name->data, "companies", 9) == 0) {
    if (value->type != JSON_ARRAY) {
      buffer_str(&path, "/companies");
      buffer_printf(&message, "must be an array of company codes, not %s", json_kind(value));
      return config_error(err, &path, &message);
    }
    for (size_t i = 0; i < value->count; i++) {
      const json_t *item = value->items[i];
      if (item->type == JSON_STRING && item->text.len > 0) continue;
      buffer_printf(&path, "/companies/%zu", i);
      if (item->type == JSON_STRING) buffer_str(&message, "a company code must not be empty");
      else buffer_printf(&message, "a company code must be a string, not %s", json_kind(item));
      return config_error(err, &path, &message);
    }
    *companies = value->count ? malloc(sizeof(string_t) * value->count) : NULL;
    for (size_t i = 0; i < value->count; i++) {
      map_plugin_string_dup_n(&(*companies)[i], value->items[i]->text.data, value->items[i]->text.len);
    }
    *company_count = value->count;
    return true;
  }
  if (name->len == 15 && memcmp(name->data, "resolve_lookups", 15) == 0) {
    if (value->type != JSON_BOOL) {
      buffer_str(&path, "/resolve_lookups");
      buffer_printf(&message, "must be true or false, not %s", json_kind(value));
      return config_error(err, &path, &message);
    }
    *resolve_lookups = value->boolean;
    return true;
  }
  buffer_str(&path, "/");
  for (size_t i = 0; i < name->len; i++) {
    if (name->data[i] == '~') buffer_str(&path, "~0");
    else if (name->data[i] == '/') buffer_str(&path, "~1");
    else buffer_add(&path, &name->data[i], 1);
  }
  buffer_str(&message, "unknown option ");
  buffer_quoted(&message, (const uint8_t *)name->data, name->len);
  buffer_str(&message, "; the options are \"companies\" and \"resolve_lookups\"");
  return config_error(err, &path, &message);
}

static void free_companies(string_t *companies, size_t count) {
  for (size_t i = 0; i < count; i++) map_plugin_string_free(&companies[i]);
  free(companies);
}

bool exports_dualwrite_table_map_plugin_configure(map_plugin_string_t *text,
                                                  exports_dualwrite_table_map_plugin_config_error_t *err) {
  reader_t reader = {text->ptr, text->ptr + text->len, 0};
  json_t *document = read_value(&reader);
  skip_space(&reader);
  if (document && reader.p != reader.end) {
    json_free(document);
    document = NULL;
  }
  map_plugin_string_free(text);
  buffer_t path = {0};
  buffer_t message = {0};
  if (!document) {
    buffer_str(&message, "not valid JSON");
    return config_error(err, &path, &message);
  }
  if (document->type != JSON_OBJECT) {
    buffer_printf(&message, "must be a JSON object, not %s", json_kind(document));
    json_free(document);
    return config_error(err, &path, &message);
  }
  string_t *companies = NULL;
  size_t company_count = 0;
  bool resolve_lookups = true;
  // Options in the byte order of their names, each name once (its last occurrence).
  const buffer_t *previous = NULL;
  for (;;) {
    const json_member_t *next = NULL;
    for (size_t i = 0; i < document->count; i++) {
      const json_member_t *member = &document->members[i];
      if (previous && byte_compare(&member->name, previous) <= 0) continue;
      if (!next || byte_compare(&member->name, &next->name) <= 0) next = member;
    }
    if (!next) break;
    previous = &next->name;
    string_t *listed = NULL;
    size_t listed_count = 0;
    bool listed_set = false;
    if (!check_option(&next->name, next->value, &listed, &listed_count, &resolve_lookups, err)) {
      free_companies(companies, company_count);
      json_free(document);
      return false;
    }
    listed_set = next->name.len == 9 && memcmp(next->name.data, "companies", 9) == 0;
    if (listed_set) {
      free_companies(companies, company_count);
      companies = listed;
      company_count = listed_count;
    }
  }
  json_free(document);
  free_companies(config.companies, config.company_count);
  config.companies = companies;
  config.company_count = company_count;
  config.resolve_lookups = resolve_lookups;
  return true;
}

// ---------------------------------------------------------------------------------------
// describe.

static dualwrite_table_map_types_entity_spec_t entity_spec(uint8_t side) {
  dualwrite_table_map_types_entity_spec_t spec;
  spec.entity = dup_cstr(ENTITIES[side]);
  spec.fields.len = FIELD_COUNT;
  spec.fields.ptr = malloc(sizeof(dualwrite_table_map_types_field_spec_t) * FIELD_COUNT);
  if (!spec.fields.ptr) abort();
  for (size_t i = 0; i < FIELD_COUNT; i++) {
    spec.fields.ptr[i].name = dup_cstr(FIELDS[side][i].name);
    spec.fields.ptr[i].kind = FIELDS[side][i].kind;
    spec.fields.ptr[i].key = FIELDS[side][i].key;
  }
  return spec;
}

void exports_dualwrite_table_map_plugin_describe(exports_dualwrite_table_map_plugin_descriptor_t *ret) {
  static const char *const TRANSFORMS[] = {"copy", "copy", "value-map", "lookup", "lookup"};
  ret->name = dup_cstr("customer-groups");
  ret->version = dup_cstr("1.0.0");
  ret->summary = dup_cstr("Syncs customer groups between the ERP CustCustomerGroup entity and CRM "
                          "msdyn_customergroups, both ways, per company.");
  ret->erp = entity_spec(ERP);
  ret->crm = entity_spec(CRM);
  ret->mappings.len = 5;
  ret->mappings.ptr = malloc(sizeof(dualwrite_table_map_types_field_mapping_t) * 5);
  if (!ret->mappings.ptr) abort();
  for (size_t i = 0; i < 5; i++) {
    dualwrite_table_map_types_field_mapping_t *mapping = &ret->mappings.ptr[i];
    mapping->erp_field.is_some = true;
    mapping->erp_field.val = dup_cstr(FIELDS[ERP][i + 1].name);
    mapping->crm_field.is_some = true;
    mapping->crm_field.val = dup_cstr(FIELDS[CRM][i + 1].name);
    mapping->direction = DUALWRITE_TABLE_MAP_TYPES_DIRECTION_BOTH;
    mapping->transform = dup_cstr(TRANSFORMS[i]);
  }
  ret->depends_on.len = 2;
  ret->depends_on.ptr = malloc(sizeof(string_t) * 2);
  if (!ret->depends_on.ptr) abort();
  ret->depends_on.ptr[0] = dup_cstr("terms-of-payment");
  ret->depends_on.ptr[1] = dup_cstr("legal-entities");
  ret->config_schema = dup_cstr(CONFIG_SCHEMA);
}
