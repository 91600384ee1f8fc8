//! Tests of the templates module through its public face: folders of template files loaded,
//! checked and rendered. What is shared by them (data, folders, issues as text) is here.

use super::*;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::json;

fn coupon() -> Value {
    json!({ "code": "THANKS-7KQ2M9XW4PJR", "title": "10 off your next order",
            "amount": "10.00", "currency": "EUR", "min_order": "30.00",
            "expires_on": "2027-01-19" })
}

/// A context with every key of docs/REFERENCE.md §6, as the callers build it.
fn ctx(first_name: &str, locale: &str) -> Value {
    json!({
        "customer": { "first_name": first_name, "last_name": null,
                      "email": "ana@example.com", "orders_count": 1,
                      "lifetime_spend": "54.90", "categories_bought": ["books", "tea"],
                      "nps_group": null },
        "order": { "id": "O-1001", "total": "54.90", "currency": "EUR",
                   "items": [{ "sku": "B-1", "name": "A Book", "category": "books",
                               "quantity": 1, "unit_price": "54.90" }],
                   "categories": ["books"], "placed_at": "2026-11-20T10:00:00Z" },
        "coupons": [coupon()],
        "coupon": coupon(),
        "delivery": null,
        "shop": { "name": "Shop", "url": "https://shop.example" },
        "unsubscribe_url": "https://packwell.shop.example/u/tok",
        "locale": locale,
    })
}

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
    dir
}

fn load(files: &[(&str, &str)]) -> Templates {
    let dir = folder(files);
    match Templates::load(dir.path()) {
        Ok(t) => t,
        Err(issues) => panic!("unexpected issues: {issues:#?}"),
    }
}

/// Issues as `relative/path:line:col: message`.
fn issues(files: &[(&str, &str)]) -> Vec<String> {
    let dir = folder(files);
    match Templates::load(dir.path()) {
        Ok(_) => Vec::new(),
        Err(issues) => issues
            .into_iter()
            .map(|i| {
                let rel = i.file.strip_prefix(dir.path()).expect("inside the folder");
                TemplateIssue {
                    file: rel.to_path_buf(),
                    ..i
                }
                .to_string()
            })
            .collect(),
    }
}

fn email(name: &str, subject: &str, html: &str) -> [(String, String); 2] {
    [
        (format!("emails/{name}/subject.hbs"), subject.to_owned()),
        (format!("emails/{name}/html.hbs"), html.to_owned()),
    ]
}

fn refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

mod check;
mod languages;
mod rendering;
