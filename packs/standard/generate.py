#!/usr/bin/env python3
"""Writes the standard map pack's deployment-config fragments (maps/*.toml) and the
README's table of maps from the reference data `standard-maps.json` (the 12
out-of-the-box dual-write maps).

Run: python3 packs/standard/generate.py PATH/TO/standard-maps.json

The fragments are committed; this script records how they were derived, so a new
version of the reference can be turned into a new pack the same way. Every decision
that is not in the reference is a constant below, with its reason.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "maps"

# Reference map name -> (pack map name, ERP entity, CRM entity, per company).
# ERP entity names follow the plugins under plugins/ where one exists; per company:
# company-data.md says every company-specific table is striped by company; currencies
# and units are global, and legal entities are the companies themselves.
MAPS = {
    "Legal entities (cdm_companies)": ("legal-entities", "CompanyInfo", "cdm_companies", False),
    "Currencies (transactioncurrencies)": ("currencies", "Currencies", "transactioncurrencies", False),
    "Units (uoms)": ("units", "Units", "uoms", False),
    "Terms of payment (msdyn_paymentterms)": ("terms-of-payment", "PaymentTerms", "msdyn_paymentterms", True),
    "Customer groups (msdyn_customergroups)": ("customer-groups", "CustCustomerGroup", "msdyn_customergroups", True),
    "Vendor groups (msdyn_vendorgroups)": ("vendor-groups", "VendVendorGroup", "msdyn_vendorgroups", True),
    "Vendors V2 (msdyn_vendors)": ("vendors", "VendVendorV2Entity", "msdyn_vendors", True),
    "Customers V3 (accounts)": ("customers", "CustCustomerV3Entity", "accounts", True),
    "Customers V3 (contacts)": ("contacts", "CustCustomerV3Entity", "contacts", True),
    "CDS released distinct products (products)": ("products", "EcoResReleasedDistinctProductCDSEntity", "products", True),
    "CDS sales order headers (salesorders)": ("sales-order-headers", "SalesOrderHeaderCDSEntity", "salesorders", True),
    "CDS sales order lines (salesorderdetails)": ("sales-order-lines", "SalesOrderLineCDSEntity", "salesorderdetails", True),
}

# Keys the reference writes as prose ("SALESORDERNUMBER + LINECREATIONSEQUENCENUMBER").
KEYS = {
    "products": (["PRODUCTNUMBER"], ["msdyn_productnumber"]),
    "sales-order-lines": (
        ["SALESORDERNUMBER", "LINECREATIONSEQUENCENUMBER"],
        ["salesorderid", "sequencenumber"],
    ),
}

# The CRM column naming the table a polymorphic (customer) lookup points into: Dataverse
# keeps it next to the lookup column as `<column>type` (`customeridtype`).
POLYMORPHIC_TYPE_FIELD = "{column}type"

# The company field of each side of a map striped by company.
COMPANY = ("DATAAREAID", "msdyn_company")

# Filters: the reference's OData-style source and reversed filters, as CEL over the
# field names of each side.
FILTERS = {
    "currencies": {"erp": 'CURRENCYCODE != "999"'},
    "vendors": {"erp": 'VENDORPARTYTYPE == "Organization" || VENDORPARTYTYPE == "Person"'},
    "customers": {"erp": 'PARTYTYPE == "Organization"', "crm": "customertypecode == 3"},
    "contacts": {
        "erp": 'PARTYTYPE == "Person"',
        "crm": "msdyn_sellable == true && msdyn_contactpersonid != null",
    },
    "sales-order-headers": {"crm": "msdyn_ordertype == 192350000"},
}

# Field kinds the reference does not give: money, quantities and percentages are exact
# decimals, counts are integers, dates are dates; everything else is text (value maps
# and constants give their own kinds).
INTEGERS = {
    "NUMBEROFMONTHS", "NUMBEROFDAYS", "CUTOFFDAYOFMONTH", "DECIMALPRECISION",
    "PAYMENTTERMSBASEDAYS", "LINECREATIONSEQUENCENUMBER", "SALESUNITDECIMALPRECISION",
    "ORGANIZATIONEMPLOYEEAMOUNT",
}
DECIMAL_PARTS = ("AMOUNT", "PRICE", "LIMIT", "QUANTITY", "PERCENTAGE", "COST", "CHARGES",
                 "LATITUDE", "LONGITUDE")


def kind_of(erp_field):
    if erp_field in INTEGERS:
        return "integer"
    if any(part in erp_field for part in DECIMAL_PARTS):
        return "decimal"
    if "DATE" in erp_field:
        return "date"
    return None


def crm_literal(text):
    """A Dataverse value of a value map or constant, typed."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def polymorphic_lookup(crm_column, targets):
    """The lookup of a line pointing into one of several maps of the pack (`targets`:
    their MAPS entries), with the CRM type column naming which."""
    erp_entities = {target[1] for target in targets}
    lookup = {}
    if len(erp_entities) == 1:
        lookup["erp_entity"] = targets[0][1]
    if all(target[3] for target in targets):
        lookup["per_company"] = True
    lookup["type_field"] = POLYMORPHIC_TYPE_FIELD.format(column=crm_column)
    maps = []
    for name, erp_entity, crm_entity, _ in targets:
        target = {"map": name}
        if len(erp_entities) > 1:
            target["erp_entity"] = erp_entity
        target["crm_entity"] = crm_entity
        maps.append(target)
    lookup["maps"] = maps
    return lookup


def direction(map_type):
    return {">": "to-crm", ">>": "to-crm", "=": "both", "><": "both", "<<": "to-erp"}[map_type]


def main(reference):
    maps = json.loads(Path(reference).read_text())
    by_table = {m["dataverse_table"]: MAPS[m["name"]] for m in maps}
    by_ref = {ref: pack[0] for ref, pack in MAPS.items()}
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.toml"):
        old.unlink()
    rows = []
    for number, m in enumerate(maps, start=1):
        name, erp_entity, crm_entity, per_company = MAPS[m["name"]]
        if name in KEYS:
            erp_key, crm_key = KEYS[name]
        else:
            erp_key = [k["fo"] for k in m["key_fields"]]
            crm_key = [k["dataverse"] for k in m["key_fields"]]
        if per_company:
            erp_key = [COMPANY[0]] + erp_key
            crm_key = [COMPANY[1]] + crm_key
        depends = []
        for edge in m["depends_on"]:
            for target in edge["in_pack"]:
                dep = by_ref[target]
                if dep != name and dep not in depends:
                    depends.append(dep)
        lines = []
        directions = {direction(field["map_type"]) for field in m["fields"]}
        map_direction = "to-crm" if directions == {"to-crm"} else "both"
        if per_company:
            company_line = {"erp": COMPANY[0], "crm": COMPANY[1],
                            "note": "company striping (company-data.md): the company code"}
            if map_direction != "both":
                company_line["direction"] = map_direction
            lines.append(company_line)
        for field in m["fields"]:
            line = {}
            fo, dv = field["fo_field"], field["dataverse_field"]
            dirn = direction(field["map_type"])
            lookup = field.get("lookup")
            crm_column = lookup["dataverse_lookup_column"] if lookup else dv
            if lookup and any(line.get("crm") == crm_column for line in lines):
                # Two lines through one lookup column (a category and its hierarchy):
                # the second gets a column named after its whole path.
                crm_column = dv.replace(".", "_")
            default = field["default_value"]
            if fo == "none":
                line = {"crm": crm_column, "constant": crm_literal(default)}
                if crm_column == "exchangerate":
                    line = {"crm": crm_column, "kind": "decimal", "constant": default}
                lines.append(line)
                continue
            if dv == "none":
                lines.append({"erp": fo, "constant": default})
                continue
            line = {"erp": fo, "crm": crm_column}
            if dirn != "both":
                line["direction"] = dirn
            kind = kind_of(fo)
            if field["value_map"]:
                line["value_map"] = [
                    {"erp": pair["fo"], "crm": crm_literal(pair["dataverse"])}
                    for pair in field["value_map"]
                ]
            elif lookup:
                targets = lookup["in_pack"]
                in_key = crm_column in crm_key
                if lookup.get("target_resolution") == "polymorphic":
                    # A Dataverse customer lookup: the ERP account went to whichever of
                    # the target maps links it, and the CRM type column next to the
                    # lookup column (Dataverse's `<column>type`) names that map's table.
                    line["lookup"] = polymorphic_lookup(crm_column, [MAPS[t] for t in targets])
                elif not targets:
                    line["note"] = (
                        f"lookup to {lookup['target_map']} ({lookup['target_table']}), a map "
                        "outside the pack: the key is carried as text"
                    )
                elif in_key:
                    line["note"] = (
                        f"lookup to {by_ref[targets[0]]} in the key: the number is the same on "
                        "both sides, so it is copied (a delete after its parent's still works)"
                    )
                else:
                    target_name, target_erp, target_crm, target_company = by_table[lookup["target_table"]]
                    line["lookup"] = {"map": target_name, "erp_entity": target_erp,
                                      "crm_entity": target_crm}
                    if target_company:
                        line["lookup"]["per_company"] = True
            elif kind:
                line["kind"] = kind
            if default is not None:
                line["default"] = crm_literal(default) if kind == "integer" else default
            lines.append(line)
        filters = FILTERS.get(name, {})

        out = []
        out.append(f"# {m['name']}: {len(m['fields'])} lines of the reference"
                   f" (mapping-tables.md #{m['anchor_in_mapping_tables']}), as a declarative map.")
        out.append("# Generated by packs/standard/generate.py from standard-maps.json.")
        out.append(f"[maps.{name}]")
        out.append('plugin = "declarative.wasm"')
        out.append(f"erp = {{ side = \"erp\", entity = {toml_value(erp_entity)}, key = {toml_value(erp_key)} }}")
        out.append(f"crm = {{ side = \"crm\", entity = {toml_value(crm_entity)}, key = {toml_value(crm_key)} }}")
        if map_direction != "both":
            out.append(f'direction = "{map_direction}"')
        else:
            out.append('conflict = { policy = "side-wins", winner = "erp" }')
        out.append(f"depends_on = {toml_value(depends)}")
        out.append("")
        out.append(f"[maps.{name}.config]")
        out.append(f'name = "{name}"')
        out.append(f"summary = {toml_value('The standard map ' + m['name'] + ' between ' + erp_entity + ' and ' + crm_entity + '.')}")
        out.append(f"erp = {{ entity = {toml_value(erp_entity)}, key = {toml_value(erp_key)} }}")
        out.append(f"crm = {{ entity = {toml_value(crm_entity)}, key = {toml_value(crm_key)} }}")
        if per_company:
            out.append(f'company = {{ erp = "{COMPANY[0]}", crm = "{COMPANY[1]}" }}')
        if filters:
            out.append("filters = " + toml_value(filters))
        out.append(f"depends_on = {toml_value(depends)}")
        for line in lines:
            out.append("")
            out.append(f"[[maps.{name}.config.fields]]")
            for key in ("erp", "crm", "direction", "kind", "value_map", "lookup", "constant",
                        "default", "note"):
                if key in line:
                    out.append(f"{key} = {toml_value(line[key])}")
        path = OUT / f"{number:02d}-{name}.toml"
        path.write_text("\n".join(out) + "\n")
        counts = {
            "lines": len(m["fields"]),
            "value maps": sum(1 for l in lines if "value_map" in l),
            "lookups": sum(1 for l in lines if "lookup" in l),
            "as text": sum(1 for l in lines if "note" in l and "company" not in l["note"]),
            "constants": sum(1 for l in lines if "constant" in l),
        }
        rows.append((number, name, m["name"], erp_entity, crm_entity, erp_key, crm_key,
                     map_direction, depends, filters, counts))
    table = ["| # | map | reference | ERP entity <-> CRM table | key | direction | lines | value maps | lookups | carried as text | constants | filters | depends on |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (number, name, ref, erp_entity, crm_entity, erp_key, crm_key, dirn, depends, filters,
         counts) in rows:
        filt = "<br>".join(f"{side}: `{expr}`" for side, expr in filters.items()) or "-"
        table.append(
            f"| {number} | `{name}` | {ref} | `{erp_entity}` <-> `{crm_entity}` | "
            f"{', '.join(erp_key)} <-> {', '.join(crm_key)} | {dirn} | {counts['lines']} | "
            f"{counts['value maps']} | {counts['lookups']} | {counts['as text']} | "
            f"{counts['constants']} | {filt} | {', '.join(depends) or '-'} |")
    readme = OUT.parent / "README.md"
    text = readme.read_text()
    start = text.index("<!-- maps: written by generate.py -->\n")
    end = text.index("<!-- /maps -->")
    head = text[:start] + "<!-- maps: written by generate.py -->\n"
    readme.write_text(head + "\n".join(table) + "\n" + text[end:])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "standard-maps.json")
