//! Demo data: the seed of both sides, and the generator of live edits.
//!
//! The seed covers every map of the standard pack, in dependency order: companies,
//! currencies, units, terms of payment, customer and vendor groups, vendors, customers
//! (one in twenty a person, synced to a CRM contact, the others organizations, synced
//! to CRM accounts), products, sales orders (a tenth as many as customers, of both kinds
//! of customer) and two lines per order. Fields the seed does not name get a value of
//! their kind, a value-mapped one the first value of its map.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::store::{AppConnection, DemoStore};
use super::{DECLARATIVE_PLUGIN, DemoMap, declarative_config, map_names, to_crm};
use crate::apply::RowWrite;
use crate::capture::RowImage;
use crate::change::{Side, Value, ValueKind};

const COMPANIES: &[(&str, &str)] = &[
    ("USMF", "Contoso Entertainment System USA"),
    ("DEMF", "Contoso Entertainment System Germany"),
    ("GBSI", "Contoso Entertainment System UK"),
];
/// Per company (as `COMPANIES`): its currency, country (ISO code, lower case as the
/// pack's value map has it), state and cities.
const COMPANY_PLACES: &[(&str, &str, &str, &[&str])] = &[
    (
        "USD",
        "us",
        "WA",
        &["Seattle", "Redmond", "Portland", "Bellevue"],
    ),
    (
        "EUR",
        "de",
        "BY",
        &["Munich", "Berlin", "Hamburg", "Cologne"],
    ),
    (
        "GBP",
        "gb",
        "LND",
        &["London", "Leeds", "Bristol", "Manchester"],
    ),
];
const CURRENCIES: &[(&str, &str, &str)] = &[
    ("USD", "US Dollar", "$"),
    ("EUR", "Euro", "€"),
    ("GBP", "Pound Sterling", "£"),
    ("JPY", "Yen", "¥"),
];
/// Units: symbol, description, class, decimal precision, system of units.
const UNITS: &[(&str, &str, &str, i64, &str)] = &[
    ("ea", "Each", "Quantity", 0, "none"),
    ("pcs", "Pieces", "Quantity", 0, "none"),
    ("box", "Box of 12", "Quantity", 0, "none"),
    ("kg", "Kilogram", "Mass", 3, "metric"),
    ("m", "Meter", "Length", 2, "metric"),
    ("h", "Hour", "Time", 2, "none"),
];
const TERMS: &[(&str, &str, i64)] = &[
    ("Net10", "Net 10 days", 10),
    ("Net30", "Net 30 days", 30),
    ("Net60", "Net 60 days", 60),
];
const GROUPS: &[(&str, &str)] = &[
    ("10", "Wholesale customers"),
    ("20", "Retail customers"),
    ("30", "Intercompany customers"),
    ("40", "Internet customers"),
];
/// The vendor groups of the declarative map (per company); one of them is internal, so a
/// filter on the description has something to leave out.
const VENDOR_GROUPS: &[(&str, &str)] = &[
    ("V10", "Domestic suppliers"),
    ("V20", "Foreign suppliers"),
    ("V90", "Internal intercompany suppliers"),
];
/// Products (per company): number, name, sales unit, price, cost, type.
const PRODUCTS: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("D0001", "Speaker cable 10m", "ea", "12.50", "6.20", "item"),
    (
        "D0002",
        "Surround sound receiver",
        "ea",
        "449.00",
        "260.00",
        "item",
    ),
    (
        "D0003",
        "Projector television",
        "ea",
        "1299.00",
        "840.00",
        "item",
    ),
    (
        "D0004",
        "High end speaker",
        "pcs",
        "899.00",
        "510.00",
        "item",
    ),
    (
        "D0005",
        "Mid-range speaker",
        "pcs",
        "329.00",
        "190.00",
        "item",
    ),
    (
        "D0006",
        "Standard speaker",
        "pcs",
        "129.00",
        "71.00",
        "item",
    ),
    ("D0007", "Speaker wire (bulk)", "m", "1.90", "0.80", "item"),
    ("D0008", "Cable ties", "box", "4.50", "1.10", "item"),
    (
        "D0009",
        "Wall mount bracket",
        "ea",
        "59.00",
        "22.00",
        "item",
    ),
    ("D0010", "Subwoofer", "ea", "549.00", "300.00", "item"),
    ("D0011", "Installation", "h", "85.00", "40.00", "service"),
    ("D0012", "Acoustic foam", "kg", "18.00", "7.50", "item"),
];
const ON_HOLD: &[&str] = &["no", "no", "no", "invoice", "all", "payment"];
const STREETS: &[&str] = &[
    "Main Street",
    "Station Road",
    "Park Avenue",
    "Church Lane",
    "High Street",
];
const FIRST_NAMES: &[&str] = &["Anna", "Ben", "Chloe", "David", "Emma", "Felix"];
const LAST_NAMES: &[&str] = &["Smith", "Müller", "Jones", "Schmidt", "Brown", "Wilson"];
const ORGANIZATIONS: &[&str] = &[
    "Trading",
    "Electronics",
    "Hifi Store",
    "Cinema Systems",
    "Retail",
    "Installers",
];
/// Lines per sales order.
const LINES_PER_ORDER: usize = 2;
/// 2026-11-01 as days since 1970-01-01 (the seed's dates are around it).
const NOVEMBER_2026: i32 = 20_758;

/// A small deterministic generator (xorshift64*), so a demo run is reproducible.
pub struct Dice(u64);

impl Dice {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Dice {
        Dice(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What was seeded.
pub(crate) struct Seeded {
    pub(crate) erp_rows: usize,
    pub(crate) crm_rows: usize,
    pub(crate) crm_changed: usize,
    pub(crate) crm_only: usize,
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn decimal(value: &str) -> Value {
    Value::Decimal(value.to_owned())
}

/// A money amount drawn between `low` and `high` (whole units), with cents.
fn money(dice: &mut Dice, low: usize, high: usize) -> String {
    format!(
        "{}.{:02}",
        low + dice.below(high.saturating_sub(low).max(1)),
        dice.below(100)
    )
}

/// The account number of seeded customer `index`.
pub fn account(index: usize) -> String {
    format!("C{index:06}")
}

/// The index of the seeded customer with account number `account`.
fn account_index(account: &str) -> Option<usize> {
    account.strip_prefix('C')?.parse().ok()
}

/// The company of seeded customer `index`.
pub fn company(index: usize) -> &'static str {
    COMPANIES[index % COMPANIES.len()].0
}

fn company_at(company: &str) -> usize {
    COMPANIES
        .iter()
        .position(|(code, _)| *code == company)
        .unwrap_or(0)
}

/// Whether seeded customer `index` is a person (synced to a CRM contact by the
/// `contacts` map) rather than an organization (a CRM account, the `customers` map):
/// one in twenty.
pub fn is_person(index: usize) -> bool {
    index % 20 == 7
}

/// The sales order number of seeded order `index`.
pub fn order_number(index: usize) -> String {
    format!("SO{index:06}")
}

/// The customer of seeded order `index`, among `customers` customers.
fn order_customer(index: usize, customers: usize) -> usize {
    (index * 7 + 3) % customers.max(1)
}

/// The account number of seeded vendor `index`.
fn vendor_account(index: usize) -> String {
    format!("V{index:06}")
}

/// For each map of the pack, the first ERP value of each value-mapped line: what a
/// field the seed does not name gets.
fn value_map_defaults(map: &DemoMap) -> &'static [(String, Value)] {
    static DEFAULTS: OnceLock<HashMap<&'static str, Vec<(String, Value)>>> = OnceLock::new();
    if map.plugin_file != DECLARATIVE_PLUGIN {
        return &[];
    }
    let all = DEFAULTS.get_or_init(|| {
        map_names()
            .map(|name| {
                let lines = declarative_config(name)
                    .and_then(|config| config.get("fields").cloned())
                    .and_then(|fields| fields.as_array().cloned())
                    .unwrap_or_default();
                let defaults = lines
                    .iter()
                    .filter_map(|line| {
                        let field = line.get("erp")?.as_str()?;
                        let first = line.get("value_map")?.get(0)?.get("erp")?;
                        let value = match first {
                            serde_json::Value::String(text) => Value::Text(text.clone()),
                            serde_json::Value::Bool(flag) => Value::Boolean(*flag),
                            serde_json::Value::Number(number) => Value::Integer(number.as_i64()?),
                            _ => return None,
                        };
                        Some((field.to_owned(), value))
                    })
                    .collect();
                (name, defaults)
            })
            .collect()
    });
    all.get(map.name).map_or(&[], Vec::as_slice)
}

/// An ERP row of `map` from named values, every other declared field by its kind (a
/// value-mapped field of a pack map: the first value of its map).
fn erp_row(map: &DemoMap, values: &[(&str, Value)]) -> RowImage {
    let mapped = value_map_defaults(map);
    map.descriptor
        .erp
        .fields
        .iter()
        .map(|field| {
            let value = values
                .iter()
                .find(|(name, _)| *name == field.name)
                .map(|(_, value)| value.clone())
                .or_else(|| {
                    mapped
                        .iter()
                        .find(|(name, _)| *name == field.name)
                        .map(|(_, value)| value.clone())
                })
                .unwrap_or_else(|| match field.kind {
                    ValueKind::Integer => Value::Integer(0),
                    ValueKind::Decimal => Value::Decimal("0".into()),
                    ValueKind::Boolean => Value::Boolean(false),
                    _ => Value::Null,
                });
            (field.name.clone(), value)
        })
        .collect()
}

/// ERP row `index` of the customers map (`map`), with values drawn from `dice`: a
/// person when [`is_person`], else an organization.
pub fn customer(map: &DemoMap, index: usize, dice: &mut Dice) -> RowImage {
    let person = is_person(index);
    let at = index % COMPANIES.len();
    let (currency, country, state, cities) = COMPANY_PLACES[at];
    let name = if person {
        format!("{} {}", dice.pick(FIRST_NAMES), dice.pick(LAST_NAMES))
    } else {
        format!("{} {}", dice.pick(LAST_NAMES), dice.pick(ORGANIZATIONS))
    };
    erp_row(
        map,
        &[
            ("DATAAREAID", text(company(index))),
            ("CUSTOMERACCOUNT", text(&account(index))),
            ("CREDITLIMIT", decimal(&money(dice, 1_000, 100_000))),
            ("SALESCURRENCYCODE", text(currency)),
            (
                "SALESMEMO",
                Value::Text(format!("{name}, customer {index} in {}", dice.pick(cities))),
            ),
            (
                "CREDITLIMITISMANDATORY",
                text(if dice.below(2) == 0 { "no" } else { "yes" }),
            ),
            ("CREDITRATING", text(dice.pick::<&str>(&["A", "B", "C"]))),
            ("CUSTOMERGROUPID", text(dice.pick(GROUPS).0)),
            (
                "IDENTIFICATIONNUMBER",
                Value::Text(format!("ID{:08}", dice.below(99_999_999))),
            ),
            ("INVOICEACCOUNT", text(&account(index))),
            ("ISONETIMECUSTOMER", text("no")),
            ("ONHOLDSTATUS", text(dice.pick::<&str>(ON_HOLD))),
            ("PARTYCOUNTRY", text(&country.to_uppercase())),
            ("PARTYSTATE", text(state)),
            ("PAYMENTTERMS", text(dice.pick(TERMS).0)),
            ("PAYMENTTERMSBASEDAYS", Value::Integer(dice.pick(TERMS).2)),
            (
                "PARTYTYPE",
                text(if person { "Person" } else { "Organization" }),
            ),
            ("PARTYNUMBER", Value::Text(format!("P{index:07}"))),
        ],
    )
}

/// How many rows of each kind the seed makes for `customers` customers.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Customers on the ERP side (indexes below this).
    customers: usize,
    /// Customers only on the CRM side (the next indexes).
    crm_only_customers: usize,
    /// Vendors.
    vendors: usize,
    /// Sales orders on the ERP side (indexes below this).
    orders: usize,
    /// Sales orders only on the CRM side (the next indexes).
    crm_only_orders: usize,
}

impl Sizes {
    fn new(customers: usize) -> Sizes {
        let orders = if customers == 0 {
            0
        } else {
            (customers / 10).max(1)
        };
        Sizes {
            customers,
            crm_only_customers: customers / 20,
            vendors: (customers / 20).max(COMPANIES.len() * 2),
            orders,
            crm_only_orders: orders / 20,
        }
    }

    /// The rows of `map` written to the ERP (the first ones; the rest are CRM-only).
    fn on_erp(&self, map: &str, rows: usize) -> usize {
        match map {
            "customers" | "contacts" => self.customers,
            "sales-order-headers" => self.orders,
            "sales-order-lines" => self.orders * LINES_PER_ORDER,
            _ => rows,
        }
    }
}

/// Seeded order `index`: its ERP header row (of `map`) on the customer
/// [`order_customer`] gives.
fn order_header(map: &DemoMap, index: usize, customers: usize, dice: &mut Dice) -> RowImage {
    let customer = order_customer(index, customers);
    let at = customer % COMPANIES.len();
    let (currency, country, state, cities) = COMPANY_PLACES[at];
    let city = *dice.pick(cities);
    let street = *dice.pick(STREETS);
    let number = (1 + dice.below(200)).to_string();
    let zip = format!("{:05}", 10_000 + dice.below(89_999));
    let address = format!("{street} {number}, {zip} {city}");
    let day = NOVEMBER_2026 + dice.below(60) as i32;
    let status = *dice.pick::<&str>(&["active", "active", "confirmed", "picked", "delivered"]);
    let language = match country {
        "de" => "de",
        "gb" => "en-gb",
        _ => "en-us",
    };
    erp_row(
        map,
        &[
            ("DATAAREAID", text(company(customer))),
            ("SALESORDERNUMBER", text(&order_number(index))),
            ("ORDERINGCUSTOMERACCOUNTNUMBER", text(&account(customer))),
            ("INVOICECUSTOMERACCOUNTNUMBER", text(&account(customer))),
            ("CURRENCYCODE", text(currency)),
            (
                "SALESORDERNAME",
                Value::Text(format!("Order {index} of {}", account(customer))),
            ),
            ("DELIVERYADDRESSCITY", text(city)),
            ("DELIVERYADDRESSCOUNTRYREGIONISOCODE", text(country)),
            ("DELIVERYADDRESSSTREET", text(street)),
            ("DELIVERYADDRESSSTREETNUMBER", text(&number)),
            ("DELIVERYADDRESSZIPCODE", text(&zip)),
            ("DELIVERYADDRESSSTATEID", text(state)),
            ("DELIVERYADDRESSNAME", text(&account(customer))),
            ("FORMATTEDDELVERYADDRESS", text(&address)),
            ("INVOICEADDRESSCITY", text(city)),
            ("INVOICEADDRESSCOUNTRYREGIONISOCODE", text(country)),
            ("INVOICEADDRESSSTREET", text(street)),
            ("INVOICEADDRESSSTREETNUMBER", text(&number)),
            ("INVOICEADDRESSZIPCODE", text(&zip)),
            ("INVOICEADDRESSSTATEID", text(state)),
            ("FORMATTEDINVOICEADDRESS", text(&address)),
            ("ORDERTOTALAMOUNT", decimal(&money(dice, 50, 5_000))),
            ("TOTALDISCOUNTAMOUNT", decimal("0.00")),
            ("ORDERTOTALTAXAMOUNT", decimal(&money(dice, 5, 500))),
            ("ORDERTOTALCHARGESAMOUNT", decimal(&money(dice, 0, 40))),
            ("PAYMENTTERMSNAME", text(dice.pick(TERMS).0)),
            ("PAYMENTTERMSBASEDATE", Value::Date(day)),
            ("REQUESTEDSHIPPINGDATE", Value::Date(day + 3)),
            ("REQUESTEDRECEIPTDATE", Value::Date(day + 5)),
            (
                "EMAIL",
                Value::Text(format!("orders{customer}@example.com")),
            ),
            (
                "CUSTOMERREQUISITIONNUMBER",
                Value::Text(format!("REQ-{}", dice.below(100_000))),
            ),
            ("SALESORDERPROCESSINGSTATUS", text(status)),
            ("LANGUAGEID", text(language)),
            ("DEFAULTSHIPPINGWAREHOUSEID", text("11")),
            ("DEFAULTSHIPPINGSITEID", text("1")),
            ("DELIVERYMODECODE", text("10")),
        ],
    )
}

/// Line `line` (1-based) of seeded order `index`: its ERP row (of `map`).
fn order_line(
    map: &DemoMap,
    index: usize,
    line: usize,
    customers: usize,
    dice: &mut Dice,
) -> RowImage {
    let customer = order_customer(index, customers);
    let at = customer % COMPANIES.len();
    let (currency, country, state, cities) = COMPANY_PLACES[at];
    let (product, name, unit, price, _, _) = PRODUCTS[(index * 3 + line) % PRODUCTS.len()];
    let quantity = 1 + dice.below(20);
    let cents: u64 = price.replace('.', "").parse().unwrap_or(0);
    let amount = cents * quantity as u64;
    let day = NOVEMBER_2026 + dice.below(60) as i32;
    erp_row(
        map,
        &[
            ("DATAAREAID", text(company(customer))),
            ("SALESORDERNUMBER", text(&order_number(index))),
            ("LINECREATIONSEQUENCENUMBER", Value::Integer(line as i64)),
            ("PRODUCTNUMBER", text(product)),
            ("PRODUCTNAME", text(name)),
            ("LINEDESCRIPTION", text(name)),
            ("SALESUNITSYMBOL", text(unit)),
            ("CURRENCYCODE", text(currency)),
            ("ORDEREDSALESQUANTITY", decimal(&format!("{quantity}.00"))),
            ("SALESPRICE", decimal(price)),
            ("SALESPRICEQUANTITY", decimal("1.00")),
            (
                "LINEAMOUNT",
                decimal(&format!("{}.{:02}", amount / 100, amount % 100)),
            ),
            ("TOTALDISCOUNTAMOUNT", decimal("0.00")),
            ("TOTALTAXAMOUNT", decimal(&format!("{}.00", amount / 1_000))),
            ("DELIVERYADDRESSCITY", text(dice.pick::<&str>(cities))),
            ("DELIVERYADDRESSCOUNTRYREGIONISOCODE", text(country)),
            ("DELIVERYADDRESSSTATEID", text(state)),
            ("REQUESTEDSHIPPINGDATE", Value::Date(day)),
            ("REQUESTEDRECEIPTDATE", Value::Date(day + 2)),
            ("SHIPPINGWAREHOUSEID", text("11")),
            ("SHIPPINGSITEID", text("1")),
            ("SALESPRODUCTCATEGORYNAME", text("Audio")),
        ],
    )
}

/// The seed rows of `map`'s ERP entity: the ERP rows first, then the CRM-only ones
/// (see [`Sizes::on_erp`]).
fn erp_rows(map: &DemoMap, sizes: &Sizes, dice: &mut Dice) -> Vec<RowImage> {
    let per_company = |make: &mut dyn FnMut(&'static str) -> Vec<RowImage>| -> Vec<RowImage> {
        COMPANIES
            .iter()
            .flat_map(|(company, _)| make(company))
            .collect()
    };
    match map.name {
        "legal-entities" => COMPANIES
            .iter()
            .map(|(code, name)| {
                erp_row(map, &[("LEGALENTITYID", text(code)), ("NAME", text(name))])
            })
            .collect(),
        "currencies" => CURRENCIES
            .iter()
            .map(|(code, name, symbol)| {
                erp_row(
                    map,
                    &[
                        ("CURRENCYCODE", text(code)),
                        ("NAME", text(name)),
                        ("SYMBOL", text(symbol)),
                    ],
                )
            })
            .collect(),
        "units" => UNITS
            .iter()
            .map(|(symbol, description, class, precision, system)| {
                erp_row(
                    map,
                    &[
                        ("UNITSYMBOL", text(symbol)),
                        ("UNITDESCRIPTION", text(description)),
                        ("UNITCLASS", text(class)),
                        ("DECIMALPRECISION", Value::Integer(*precision)),
                        (
                            "ISBASEUNIT",
                            text(if *symbol == "ea" { "yes" } else { "no" }),
                        ),
                        ("ISSYSTEMUNIT", text("yes")),
                        ("SYSTEMOFUNITS", text(system)),
                    ],
                )
            })
            .collect(),
        "terms-of-payment" => per_company(&mut |company| {
            TERMS
                .iter()
                .map(|(name, description, days)| {
                    erp_row(
                        map,
                        &[
                            ("DATAAREAID", text(company)),
                            ("NAME", text(name)),
                            ("DESCRIPTION", text(description)),
                            ("NUMBEROFDAYS", Value::Integer(*days)),
                            ("ISCASHPAYMENT", text("no")),
                            ("ISCERTIFIEDCOMPANYCHECK", text("no")),
                            (
                                "ISDEFAULTPAYMENTTERM",
                                text(if *name == "Net30" { "yes" } else { "no" }),
                            ),
                            ("CREDITCARDPAYMENTTYPE", text("na")),
                            ("CREDITCARDCREDITCHECKTYPE", text("normal")),
                            ("PAYMENTMETHODTYPE", text("net")),
                        ],
                    )
                })
                .collect()
        }),
        "customer-groups" => per_company(&mut |company| {
            GROUPS
                .iter()
                .map(|(id, description)| {
                    erp_row(
                        map,
                        &[
                            ("DATAAREAID", text(company)),
                            ("CUSTOMERGROUPID", text(id)),
                            ("DESCRIPTION", text(description)),
                            ("ISSALESTAXINCLUDEDINPRICE", text("no")),
                            ("PAYMENTTERMID", text("Net30")),
                            ("CLEARINGPERIODPAYMENTTERMNAME", text("Net10")),
                        ],
                    )
                })
                .collect()
        }),
        "vendor-groups" => per_company(&mut |company| {
            VENDOR_GROUPS
                .iter()
                .map(|(id, description)| {
                    erp_row(
                        map,
                        &[
                            ("DATAAREAID", text(company)),
                            ("VENDORGROUPID", text(id)),
                            ("DESCRIPTION", text(description)),
                            ("DEFAULTPAYMENTTERMNAME", text("Net30")),
                            ("CLEARINGPERIODPAYMENTTERMNAME", text("Net10")),
                        ],
                    )
                })
                .collect()
        }),
        "vendors" => (0..sizes.vendors)
            .map(|index| {
                let company = COMPANIES[index % COMPANIES.len()].0;
                let (currency, _, _, _) = COMPANY_PLACES[index % COMPANIES.len()];
                let account = vendor_account(index);
                let person = index % 10 == 9;
                erp_row(
                    map,
                    &[
                        ("DATAAREAID", text(company)),
                        ("VENDORACCOUNTNUMBER", text(&account)),
                        ("VENDORGROUPID", text(VENDOR_GROUPS[index % 2].0)),
                        (
                            "VENDORPARTYTYPE",
                            text(if person { "Person" } else { "Organization" }),
                        ),
                        ("CREDITLIMIT", decimal(&money(dice, 5_000, 50_000))),
                        ("CREDITRATING", text(dice.pick::<&str>(&["A", "B", "C"]))),
                        ("CURRENCYCODE", text(currency)),
                        ("DEFAULTPAYMENTTERMSNAME", text(dice.pick(TERMS).0)),
                        ("INVOICEVENDORACCOUNTNUMBER", text(&account)),
                        ("ONHOLDSTATUS", text("no")),
                        (
                            "ORGANIZATIONEMPLOYEEAMOUNT",
                            Value::Integer(if person {
                                1
                            } else {
                                5 + dice.below(500) as i64
                            }),
                        ),
                        ("VENDORPARTYNUMBER", Value::Text(format!("VP{index:07}"))),
                        (
                            "PRIMARYURL",
                            Value::Text(format!("https://vendor{index}.example.com")),
                        ),
                    ],
                )
            })
            .collect(),
        "customers" | "contacts" => (0..sizes.customers + sizes.crm_only_customers)
            .map(|index| customer(map, index, dice))
            .collect(),
        "products" => per_company(&mut |company| {
            let (currency, _, _, _) = COMPANY_PLACES[company_at(company)];
            PRODUCTS
                .iter()
                .map(|(number, name, unit, price, cost, kind)| {
                    erp_row(
                        map,
                        &[
                            ("DATAAREAID", text(company)),
                            ("PRODUCTNUMBER", text(number)),
                            ("ITEMNUMBER", text(number)),
                            ("PRODUCTNAME", text(name)),
                            (
                                "PRODUCTDESCRIPTION",
                                Value::Text(format!("{name} ({unit})")),
                            ),
                            ("CURRENCYCODE", text(currency)),
                            ("SALESUNITSYMBOL", text(unit)),
                            ("SALESPRICE", decimal(price)),
                            ("UNITCOST", decimal(cost)),
                            ("PRODUCTTYPE", text(kind)),
                            (
                                "FIELDSERVICEPRODUCTTYPE",
                                text(if *kind == "service" {
                                    "Service"
                                } else {
                                    "Inventory"
                                }),
                            ),
                            (
                                "ISSTOCKEDPRODUCT",
                                text(if *kind == "service" { "no" } else { "yes" }),
                            ),
                        ],
                    )
                })
                .collect()
        }),
        "sales-order-headers" => (0..sizes.orders + sizes.crm_only_orders)
            .map(|index| order_header(map, index, sizes.customers, dice))
            .collect(),
        "sales-order-lines" => (0..sizes.orders + sizes.crm_only_orders)
            .flat_map(|index| (1..=LINES_PER_ORDER).map(move |line| (index, line)))
            .map(|(index, line)| order_line(map, index, line, sizes.customers, dice))
            .collect(),
        _ => Vec::new(),
    }
}

/// Which seed rows of `map` the CRM side holds before the initial sync, given as the
/// row's index (`erp` rows are on the ERP too): reference data whole, half the vendors
/// and products, a fifth of the customers and orders (with their lines), and every
/// CRM-only row.
fn on_crm(map: &str, index: usize, erp: usize) -> bool {
    if index >= erp {
        return true;
    }
    match map {
        "vendors" | "products" => index.is_multiple_of(2),
        "customers" | "contacts" | "sales-order-headers" => index.is_multiple_of(5),
        "sales-order-lines" => (index / LINES_PER_ORDER).is_multiple_of(5),
        _ => true,
    }
}

/// The CRM field a CRM copy of `map` gets changed in (one copy in three of the maps
/// whose rows the CRM edits), so the merge has differences to settle.
fn edited_on_crm(map: &str) -> Option<&'static str> {
    match map {
        "customers" | "contacts" | "products" => Some("description"),
        "vendors" => Some("msdyn_creditrating"),
        "sales-order-headers" => Some("shipto_city"),
        _ => None,
    }
}

/// Seeds both sides; see the module doc of `demo`.
pub(crate) fn seed(
    maps: &[DemoMap],
    erp: &DemoStore,
    crm: &DemoStore,
    customers: usize,
) -> anyhow::Result<Seeded> {
    let mut dice = Dice::new(0x5EED);
    let sizes = Sizes::new(customers);
    let mut seeded = Seeded {
        erp_rows: 0,
        crm_rows: 0,
        crm_changed: 0,
        crm_only: 0,
    };
    // Maps sharing an ERP entity (customers and contacts) share its rows.
    let mut by_entity: HashMap<String, Vec<RowImage>> = HashMap::new();
    for map in maps {
        let entity = &map.descriptor.erp.entity;
        let first = !by_entity.contains_key(entity);
        if first {
            let rows = erp_rows(map, &sizes, &mut dice);
            by_entity.insert(entity.clone(), rows);
        }
        let rows = &by_entity[entity];
        let erp_count = sizes.on_erp(map.name, rows.len()).min(rows.len());
        let erp_key = map.key(Side::Erp);
        let crm_key = map.key(Side::Crm);
        let key_of = |row: &RowImage, key: &[String]| -> RowImage {
            key.iter()
                .map(|column| {
                    (
                        column.clone(),
                        row.get(column).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect()
        };
        if first {
            let erp_writes: Vec<RowWrite> = rows[..erp_count]
                .iter()
                .map(|row| RowWrite::upsert(entity, key_of(row, &erp_key), row.clone()))
                .collect();
            erp.write(Side::Erp, &erp_writes)
                .with_context(|| format!("seeding {entity} on the ERP side"))?;
            seeded.erp_rows += erp_writes.len();
        }

        // The CRM side holds part of it already (see `on_crm`), a third of the copies of
        // some maps with another value, and the CRM-only rows.
        let crm_rows = to_crm(map, rows)?;
        let mut crm_writes = Vec::new();
        for (index, crm_row) in crm_rows.into_iter().enumerate() {
            let Some(mut crm_row) = crm_row else { continue };
            if !on_crm(map.name, index, erp_count) {
                continue;
            }
            let crm_only_row = index >= erp_count;
            if let Some(field) = edited_on_crm(map.name)
                && !crm_only_row
                && index % 3 == 0
                && crm_row.contains_key(field)
            {
                crm_row.insert(
                    field.into(),
                    Value::Text(format!("Edited in the CRM before sync ({index})")),
                );
                seeded.crm_changed += 1;
            }
            // A polymorphic customer lookup's type column (the seed's copy carries the
            // account number without looking up its link): the customer's CRM table.
            for (lookup, type_field) in [
                ("customerid", "customeridtype"),
                ("msdyn_invoicecustomerid", "msdyn_invoicecustomeridtype"),
            ] {
                if let (Some(Value::Text(account)), true) =
                    (crm_row.get(lookup), crm_row.contains_key(type_field))
                    && let Some(customer) = account_index(account)
                {
                    let table = if is_person(customer) {
                        "contacts"
                    } else {
                        "accounts"
                    };
                    crm_row.insert(type_field.into(), text(table));
                }
            }
            if crm_only_row {
                seeded.crm_only += 1;
            }
            crm_writes.push(RowWrite::upsert(
                &map.descriptor.crm.entity,
                key_of(&crm_row, &crm_key),
                crm_row,
            ));
        }
        crm.write(Side::Crm, &crm_writes)
            .with_context(|| format!("seeding {} on the CRM side", map.descriptor.crm.entity))?;
        seeded.crm_rows += crm_writes.len();
    }
    Ok(seeded)
}

/// Edits both sides like two busy applications would, with plain SQL on connections of
/// their own (so the edits are captured like any application's): customers (accounts
/// and contacts), sales orders and their lines, products, vendors, customer and vendor
/// groups.
pub(crate) struct Generator {
    erp: AppConnection,
    crm: AppConnection,
    sizes: Sizes,
    dice: Dice,
    next_new: usize,
    next_order: usize,
}

impl Generator {
    pub(crate) fn new(
        erp: &DemoStore,
        crm: &DemoStore,
        customers: usize,
    ) -> anyhow::Result<Generator> {
        let sizes = Sizes::new(customers);
        Ok(Generator {
            erp: erp.application(Side::Erp)?,
            crm: crm.application(Side::Crm)?,
            sizes,
            dice: Dice::new(0xED17),
            next_new: customers + sizes.crm_only_customers + 1,
            next_order: sizes.orders + sizes.crm_only_orders,
        })
    }

    /// Makes `rate` edits per second until `shutdown`, counting them in `edits`.
    pub(crate) fn run(mut self, rate: u32, shutdown: &AtomicBool, edits: &AtomicU64) {
        let started = Instant::now();
        let mut made: u64 = 0;
        while !shutdown.load(Ordering::Relaxed) {
            let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
            if made >= due {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            if let Err(error) = self.edit() {
                tracing::warn!("demo generator: {error:#}");
            }
            made += 1;
            edits.store(made, Ordering::Relaxed);
        }
    }

    fn db(&mut self, side: Side) -> &mut AppConnection {
        match side {
            Side::Erp => &mut self.erp,
            Side::Crm => &mut self.crm,
        }
    }

    /// `UPDATE table SET set... WHERE key...` on `side`, quoted for its store.
    fn update(
        &mut self,
        side: Side,
        table: &str,
        set: &[(&str, &str)],
        key: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let db = self.db(side);
        let pairs = |pairs: &[(&str, &str)], glue: &str| {
            pairs
                .iter()
                .map(|(column, value)| format!("{} = {}", db.ident(column), db.literal(value)))
                .collect::<Vec<_>>()
                .join(glue)
        };
        let sql = format!(
            "UPDATE {} SET {} WHERE {}",
            db.ident(table),
            pairs(set, ", "),
            pairs(key, " AND ")
        );
        db.run(&sql)
    }

    /// `INSERT INTO table (columns...) VALUES (values...)` on `side`.
    fn insert(&mut self, side: Side, table: &str, row: &[(&str, &str)]) -> anyhow::Result<()> {
        let db = self.db(side);
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            db.ident(table),
            row.iter()
                .map(|(column, _)| db.ident(column))
                .collect::<Vec<_>>()
                .join(", "),
            row.iter()
                .map(|(_, value)| db.literal(value))
                .collect::<Vec<_>>()
                .join(", ")
        );
        db.run(&sql)
    }

    /// The CRM table and key of seeded customer `index`: an account or a contact.
    fn crm_customer(index: usize) -> (&'static str, [(&'static str, &'static str); 2], String) {
        if is_person(index) {
            (
                "contacts",
                [
                    ("msdyn_company", company(index)),
                    ("msdyn_contactpersonid", ""),
                ],
                account(index),
            )
        } else {
            (
                "accounts",
                [("msdyn_company", company(index)), ("accountnumber", "")],
                account(index),
            )
        }
    }

    fn edit(&mut self) -> anyhow::Result<()> {
        if self.sizes.customers == 0 {
            return Ok(());
        }
        let index = self.dice.below(self.sizes.customers);
        let (row_company, row_account) = (company(index), account(index));
        let erp_key = [
            ("DATAAREAID", row_company),
            ("CUSTOMERACCOUNT", row_account.as_str()),
        ];
        let (crm_table, [company_key, (account_column, _)], _) = Self::crm_customer(index);
        let crm_key = [company_key, (account_column, row_account.as_str())];
        let roll = self.dice.below(100);
        let limit = money(&mut self.dice, 1_000, 100_000);
        match roll {
            0..25 => {
                let memo = format!("ERP edit {}", self.dice.next() % 10_000);
                self.update(
                    Side::Erp,
                    "CustCustomerV3Entity",
                    &[("CREDITLIMIT", &limit), ("SALESMEMO", &memo)],
                    &erp_key,
                )?;
            }
            25..38 => {
                let description = format!("CRM edit {}", self.dice.next() % 10_000);
                let mut set = vec![("description", description.as_str())];
                let rating = ["A", "B", "C"][self.dice.below(3)];
                if crm_table == "accounts" {
                    set.push(("msdyn_creditrating", rating));
                }
                self.update(Side::Crm, crm_table, &set, &crm_key)?;
            }
            38..44 => {
                // The same row on both sides, close together: a conflict for the policy.
                self.update(
                    Side::Erp,
                    "CustCustomerV3Entity",
                    &[("SALESMEMO", "ERP side of a conflict")],
                    &erp_key,
                )?;
                self.update(
                    Side::Crm,
                    crm_table,
                    &[("description", "CRM side of a conflict")],
                    &crm_key,
                )?;
            }
            44..52 => {
                // A new customer: an organization, or now and then a person.
                let new = self.next_new;
                self.next_new += 1;
                let account = account(new);
                let (currency, country, state, _) = COMPANY_PLACES[new % COMPANIES.len()];
                let country = country.to_uppercase();
                self.insert(
                    Side::Erp,
                    "CustCustomerV3Entity",
                    &[
                        ("DATAAREAID", company(new)),
                        ("CUSTOMERACCOUNT", &account),
                        ("CREDITLIMIT", &limit),
                        ("SALESCURRENCYCODE", currency),
                        ("SALESMEMO", "New customer"),
                        ("CREDITLIMITISMANDATORY", "no"),
                        ("CUSTOMERGROUPID", "10"),
                        ("INVOICEACCOUNT", &account),
                        ("ISONETIMECUSTOMER", "no"),
                        ("ONHOLDSTATUS", "no"),
                        ("PAYMENTTERMS", "Net30"),
                        ("PARTYCOUNTRY", &country),
                        ("PARTYSTATE", state),
                        (
                            "PARTYTYPE",
                            if is_person(new) {
                                "Person"
                            } else {
                                "Organization"
                            },
                        ),
                    ],
                )?;
            }
            52..60 => {
                // A new sales order with two lines, for a customer of either kind.
                let order = self.next_order;
                self.next_order += 1;
                let number = order_number(order);
                let at = index % COMPANIES.len();
                let (currency, country, state, cities) = COMPANY_PLACES[at];
                let city = *self.dice.pick(cities);
                let total = money(&mut self.dice, 50, 5_000);
                let name = format!("Order {order} of {row_account}");
                self.insert(
                    Side::Erp,
                    "SalesOrderHeaderCDSEntity",
                    &[
                        ("DATAAREAID", row_company),
                        ("SALESORDERNUMBER", &number),
                        ("ORDERINGCUSTOMERACCOUNTNUMBER", &row_account),
                        ("INVOICECUSTOMERACCOUNTNUMBER", &row_account),
                        ("CURRENCYCODE", currency),
                        ("SALESORDERNAME", &name),
                        ("DELIVERYADDRESSCITY", city),
                        ("DELIVERYADDRESSCOUNTRYREGIONISOCODE", country),
                        ("DELIVERYADDRESSSTATEID", state),
                        ("ORDERTOTALAMOUNT", &total),
                        ("PAYMENTTERMSNAME", "Net30"),
                        ("SALESORDERPROCESSINGSTATUS", "active"),
                    ],
                )?;
                for line in 1..=LINES_PER_ORDER {
                    let (product, product_name, unit, price, _, _) =
                        PRODUCTS[self.dice.below(PRODUCTS.len())];
                    let sequence = line.to_string();
                    let quantity = format!("{}.00", 1 + self.dice.below(10));
                    self.insert(
                        Side::Erp,
                        "SalesOrderLineCDSEntity",
                        &[
                            ("DATAAREAID", row_company),
                            ("SALESORDERNUMBER", &number),
                            ("LINECREATIONSEQUENCENUMBER", &sequence),
                            ("PRODUCTNUMBER", product),
                            ("PRODUCTNAME", product_name),
                            ("SALESUNITSYMBOL", unit),
                            ("CURRENCYCODE", currency),
                            ("ORDEREDSALESQUANTITY", &quantity),
                            ("SALESPRICE", price),
                        ],
                    )?;
                }
            }
            60..68 if self.sizes.orders > 0 => {
                // The ERP moves a seeded order on.
                let order = self.dice.below(self.sizes.orders);
                let customer = order_customer(order, self.sizes.customers);
                let status = ["confirmed", "picked", "delivered", "invoiced"][self.dice.below(4)];
                let number = order_number(order);
                self.update(
                    Side::Erp,
                    "SalesOrderHeaderCDSEntity",
                    &[("SALESORDERPROCESSINGSTATUS", status)],
                    &[
                        ("DATAAREAID", company(customer)),
                        ("SALESORDERNUMBER", &number),
                    ],
                )?;
            }
            68..76 if self.sizes.orders > 0 => {
                // The CRM changes where a seeded order goes.
                let order = self.dice.below(self.sizes.orders);
                let customer = order_customer(order, self.sizes.customers);
                let (_, _, _, cities) = COMPANY_PLACES[customer % COMPANIES.len()];
                let city = *self.dice.pick(cities);
                let email = format!("buyer{}@example.com", self.dice.below(1_000));
                let number = order_number(order);
                self.update(
                    Side::Crm,
                    "salesorders",
                    &[("shipto_city", city), ("emailaddress", &email)],
                    &[
                        ("msdyn_company", company(customer)),
                        ("msdyn_salesordernumber", &number),
                    ],
                )?;
            }
            76..80 if self.sizes.orders > 0 => {
                // The ERP changes the quantity of a seeded order line.
                let order = self.dice.below(self.sizes.orders);
                let customer = order_customer(order, self.sizes.customers);
                let quantity = format!("{}.00", 1 + self.dice.below(30));
                let number = order_number(order);
                self.update(
                    Side::Erp,
                    "SalesOrderLineCDSEntity",
                    &[("ORDEREDSALESQUANTITY", &quantity)],
                    &[
                        ("DATAAREAID", company(customer)),
                        ("SALESORDERNUMBER", &number),
                        ("LINECREATIONSEQUENCENUMBER", "1"),
                    ],
                )?;
            }
            80..84 => {
                // A price change in the ERP (products flow to the CRM only).
                let (product, _, _, _, _, _) = PRODUCTS[self.dice.below(PRODUCTS.len())];
                let price = money(&mut self.dice, 1, 1_500);
                self.update(
                    Side::Erp,
                    "EcoResReleasedDistinctProductCDSEntity",
                    &[("SALESPRICE", &price)],
                    &[("DATAAREAID", row_company), ("PRODUCTNUMBER", product)],
                )?;
            }
            84..88 => {
                // The CRM rates a vendor.
                let vendor = self.dice.below(self.sizes.vendors);
                let rating = ["A", "B", "C", "D"][self.dice.below(4)];
                let account = vendor_account(vendor);
                self.update(
                    Side::Crm,
                    "msdyn_vendors",
                    &[("msdyn_creditrating", rating)],
                    &[
                        ("msdyn_company", COMPANIES[vendor % COMPANIES.len()].0),
                        ("msdyn_vendoraccountnumber", &account),
                    ],
                )?;
            }
            88..92 => {
                let description = format!("Group edited in the CRM {}", self.dice.below(100));
                let group = GROUPS[self.dice.below(GROUPS.len())].0;
                self.update(
                    Side::Crm,
                    "msdyn_customergroups",
                    &[("msdyn_description", &description)],
                    &[("msdyn_company", row_company), ("msdyn_groupid", group)],
                )?;
            }
            92..96 => {
                // A new vendor group now and then (try a filter on its description in
                // the web UI and watch new ones pass or not).
                let new = self.next_new;
                self.next_new += 1;
                let description = if new.is_multiple_of(2) {
                    format!("Internal suppliers {new}")
                } else {
                    format!("Suppliers {new}")
                };
                let group = format!("V{new}");
                self.insert(
                    Side::Erp,
                    "VendVendorGroup",
                    &[
                        ("DATAAREAID", row_company),
                        ("VENDORGROUPID", &group),
                        ("DESCRIPTION", &description),
                        ("DEFAULTPAYMENTTERMNAME", "Net30"),
                        ("CLEARINGPERIODPAYMENTTERMNAME", "Net10"),
                    ],
                )?;
            }
            _ => {
                // Now and then the newest customer the generator made (it has no orders)
                // is deleted again.
                if self.next_new > self.sizes.customers + self.sizes.crm_only_customers + 2 {
                    let gone = self.next_new - 1;
                    let account = account(gone);
                    let db = &mut self.erp;
                    let sql = format!(
                        "DELETE FROM {} WHERE {} = {} AND {} = {}",
                        db.ident("CustCustomerV3Entity"),
                        db.ident("DATAAREAID"),
                        db.literal(company(gone)),
                        db.ident("CUSTOMERACCOUNT"),
                        db.literal(&account)
                    );
                    db.run(&sql)?;
                }
            }
        }
        Ok(())
    }
}
