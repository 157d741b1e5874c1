//! Demo data: the seed of both sides, and the generator of live edits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::store::{AppConnection, DemoStore};
use super::{DemoMap, to_crm};
use crate::apply::RowWrite;
use crate::capture::RowImage;
use crate::change::{Side, Value, ValueKind};

const COMPANIES: &[(&str, &str)] = &[
    ("USMF", "Contoso Entertainment System USA"),
    ("DEMF", "Contoso Entertainment System Germany"),
    ("GBSI", "Contoso Entertainment System UK"),
];
const CURRENCIES: &[(&str, &str, &str)] = &[
    ("USD", "US Dollar", "$"),
    ("EUR", "Euro", "€"),
    ("GBP", "Pound Sterling", "£"),
    ("JPY", "Yen", "¥"),
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
const ON_HOLD: &[&str] = &["no", "no", "no", "invoice", "all", "payment"];
const CITIES: &[&str] = &[
    "Seattle", "Redmond", "Munich", "London", "Berlin", "Portland",
];

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

/// The account number of seeded customer `index`.
pub fn account(index: usize) -> String {
    format!("C{index:06}")
}

/// The company of seeded customer `index`.
pub fn company(index: usize) -> &'static str {
    COMPANIES[index % COMPANIES.len()].0
}

/// An ERP row of `map` from named values, every other declared field by its kind.
fn erp_row(map: &DemoMap, values: &[(&str, Value)]) -> RowImage {
    map.descriptor
        .erp
        .fields
        .iter()
        .map(|field| {
            let value = values
                .iter()
                .find(|(name, _)| *name == field.name)
                .map(|(_, value)| value.clone())
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

/// ERP row `index` of the customers map (`map`), with values drawn from `dice`: one in
/// twenty is a person, the rest organizations.
pub fn customer(map: &DemoMap, index: usize, dice: &mut Dice) -> RowImage {
    let organization = dice.below(20) != 0;
    erp_row(
        map,
        &[
            ("DATAAREAID", text(company(index))),
            ("CUSTOMERACCOUNT", text(&account(index))),
            (
                "CREDITLIMIT",
                Value::Decimal(format!(
                    "{}.{:02}",
                    1_000 + dice.below(99_000),
                    dice.below(100)
                )),
            ),
            ("SALESCURRENCYCODE", text(dice.pick(CURRENCIES).0)),
            (
                "SALESMEMO",
                Value::Text(format!("Customer {index} in {}", dice.pick(CITIES))),
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
            (
                "PARTYCOUNTRY",
                text(dice.pick::<&str>(&["USA", "DEU", "GBR"])),
            ),
            (
                "PARTYSTATE",
                text(dice.pick::<&str>(&["WA", "OR", "BY", "LND"])),
            ),
            ("PAYMENTTERMS", text(dice.pick(TERMS).0)),
            ("PAYMENTTERMSBASEDAYS", Value::Integer(dice.pick(TERMS).2)),
            (
                "PARTYTYPE",
                text(if organization {
                    "Organization"
                } else {
                    "Person"
                }),
            ),
            ("PARTYNUMBER", Value::Text(format!("P{index:07}"))),
        ],
    )
}

/// The seed rows of each map's ERP entity; customers get `customers` rows plus the
/// CRM-only extra ones at the end (not written to the ERP).
fn erp_rows(map: &DemoMap, customers: usize, crm_only: usize, dice: &mut Dice) -> Vec<RowImage> {
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
        "terms-of-payment" => COMPANIES
            .iter()
            .flat_map(|(company, _)| {
                TERMS
                    .iter()
                    .map(move |(name, description, days)| (company, name, description, days))
            })
            .map(|(company, name, description, days)| {
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
            .collect(),
        "customer-groups" => COMPANIES
            .iter()
            .flat_map(|(company, _)| GROUPS.iter().map(move |group| (company, group)))
            .map(|(company, (id, description))| {
                erp_row(
                    map,
                    &[
                        ("DATAAREAID", text(company)),
                        ("CUSTOMERGROUPID", text(id)),
                        ("DESCRIPTION", text(description)),
                        ("ISSALESTAXINCLUDEDINPRICE", text("no")),
                        ("PAYMENTTERMID", text("Net30")),
                    ],
                )
            })
            .collect(),
        "vendor-groups" => COMPANIES
            .iter()
            .flat_map(|(company, _)| VENDOR_GROUPS.iter().map(move |group| (company, group)))
            .map(|(company, (id, description))| {
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
            .collect(),
        _ => (0..customers + crm_only)
            .map(|index| customer(map, index, dice))
            .collect(),
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
    let crm_only = customers / 20;
    let mut seeded = Seeded {
        erp_rows: 0,
        crm_rows: 0,
        crm_changed: 0,
        crm_only: 0,
    };
    for map in maps {
        let rows = erp_rows(map, customers, crm_only, &mut dice);
        let is_customers = map.name == "customers";
        let erp_count = if is_customers { customers } else { rows.len() };
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
        let erp_writes: Vec<RowWrite> = rows[..erp_count]
            .iter()
            .map(|row| {
                RowWrite::upsert(
                    &map.descriptor.erp.entity,
                    key_of(row, &erp_key),
                    row.clone(),
                )
            })
            .collect();
        erp.write(Side::Erp, &erp_writes)
            .with_context(|| format!("seeding {} on the ERP side", map.descriptor.erp.entity))?;
        seeded.erp_rows += erp_writes.len();

        // The CRM side holds part of it already: every reference row, a fifth of the
        // customers (a third of those with other values), and the CRM-only customers.
        let crm_rows = to_crm(map, &rows)?;
        let mut crm_writes = Vec::new();
        for (index, crm_row) in crm_rows.into_iter().enumerate() {
            let Some(mut crm_row) = crm_row else { continue };
            let crm_only_row = index >= erp_count;
            if is_customers && !crm_only_row && index % 5 != 0 {
                continue;
            }
            if is_customers && !crm_only_row && index % 3 == 0 {
                crm_row.insert(
                    "description".into(),
                    Value::Text(format!("Edited in the CRM before sync ({index})")),
                );
                seeded.crm_changed += 1;
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
/// their own (so the edits are captured like any application's).
pub(crate) struct Generator {
    erp: AppConnection,
    crm: AppConnection,
    customers: usize,
    dice: Dice,
    next_new: usize,
}

impl Generator {
    pub(crate) fn new(
        erp: &DemoStore,
        crm: &DemoStore,
        customers: usize,
    ) -> anyhow::Result<Generator> {
        Ok(Generator {
            erp: erp.application(Side::Erp)?,
            crm: crm.application(Side::Crm)?,
            customers,
            dice: Dice::new(0xED17),
            next_new: customers + customers / 20 + 1,
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

    /// `UPDATE table SET set... WHERE key...` on `side`, quoted for its store.
    fn update(
        &mut self,
        side: Side,
        table: &str,
        set: &[(&str, &str)],
        key: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let db = match side {
            Side::Erp => &mut self.erp,
            Side::Crm => &mut self.crm,
        };
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

    fn edit(&mut self) -> anyhow::Result<()> {
        let index = self.dice.below(self.customers);
        let (row_company, row_account) = (company(index), account(index));
        let erp_key = [
            ("DATAAREAID", row_company),
            ("CUSTOMERACCOUNT", row_account.as_str()),
        ];
        let crm_key = [
            ("msdyn_company", row_company),
            ("accountnumber", row_account.as_str()),
        ];
        let roll = self.dice.below(100);
        let limit = format!(
            "{}.{:02}",
            1_000 + self.dice.below(99_000),
            self.dice.below(100)
        );
        match roll {
            0..40 => {
                let memo = format!("ERP edit {}", self.dice.next() % 10_000);
                self.update(
                    Side::Erp,
                    "CustCustomerV3Entity",
                    &[("CREDITLIMIT", &limit), ("SALESMEMO", &memo)],
                    &erp_key,
                )?;
            }
            40..65 => {
                let description = format!("CRM edit {}", self.dice.next() % 10_000);
                let rating = ["A", "B", "C"][self.dice.below(3)];
                self.update(
                    Side::Crm,
                    "accounts",
                    &[
                        ("description", &description),
                        ("msdyn_creditrating", rating),
                    ],
                    &crm_key,
                )?;
            }
            65..75 => {
                // The same row on both sides, close together: a conflict for the policy.
                self.update(
                    Side::Erp,
                    "CustCustomerV3Entity",
                    &[("SALESMEMO", "ERP side of a conflict")],
                    &erp_key,
                )?;
                self.update(
                    Side::Crm,
                    "accounts",
                    &[("description", "CRM side of a conflict")],
                    &crm_key,
                )?;
            }
            75..90 => {
                let new = self.next_new;
                self.next_new += 1;
                let db = &mut self.erp;
                let columns = [
                    "DATAAREAID",
                    "CUSTOMERACCOUNT",
                    "CREDITLIMIT",
                    "SALESCURRENCYCODE",
                    "SALESMEMO",
                    "CREDITLIMITISMANDATORY",
                    "CUSTOMERGROUPID",
                    "INVOICEACCOUNT",
                    "ISONETIMECUSTOMER",
                    "ONHOLDSTATUS",
                    "PAYMENTTERMS",
                    "PARTYTYPE",
                ];
                let account = account(new);
                let values = [
                    company(new),
                    account.as_str(),
                    limit.as_str(),
                    "USD",
                    "New customer",
                    "no",
                    "10",
                    account.as_str(),
                    "no",
                    "no",
                    "Net30",
                    "Organization",
                ];
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    db.ident("CustCustomerV3Entity"),
                    columns
                        .iter()
                        .map(|column| db.ident(column))
                        .collect::<Vec<_>>()
                        .join(", "),
                    values
                        .iter()
                        .map(|value| db.literal(value))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                db.run(&sql)?;
            }
            96 => {
                // A new vendor group now and then (a declarative map: try a filter on
                // its description in the web UI and watch new ones pass or not).
                let new = self.next_new;
                self.next_new += 1;
                let description = if new.is_multiple_of(2) {
                    format!("Internal suppliers {new}")
                } else {
                    format!("Suppliers {new}")
                };
                let group = format!("V{new}");
                let db = &mut self.erp;
                let columns = [
                    "DATAAREAID",
                    "VENDORGROUPID",
                    "DESCRIPTION",
                    "DEFAULTPAYMENTTERMNAME",
                    "CLEARINGPERIODPAYMENTTERMNAME",
                ];
                let values = [
                    row_company,
                    group.as_str(),
                    description.as_str(),
                    "Net30",
                    "Net10",
                ];
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    db.ident("VendVendorGroup"),
                    columns
                        .iter()
                        .map(|column| db.ident(column))
                        .collect::<Vec<_>>()
                        .join(", "),
                    values
                        .iter()
                        .map(|value| db.literal(value))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                db.run(&sql)?;
            }
            90..96 => {
                let description = format!("Group edited in the CRM {}", self.dice.below(100));
                let group = GROUPS[self.dice.below(GROUPS.len())].0;
                self.update(
                    Side::Crm,
                    "msdyn_customergroups",
                    &[("msdyn_description", &description)],
                    &[("msdyn_company", row_company), ("msdyn_groupid", group)],
                )?;
            }
            _ => {
                if self.next_new > self.customers + self.customers / 20 + 2 {
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
