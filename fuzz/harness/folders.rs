//! `rules_folder` and `template`: a rule folder and a templates folder written from the input
//! and loaded as `validate`, the service and its reloads load them.

use super::{EXAMPLE_ORDER, apply_checked, copy_folder, example_event, key, repo_root, scratch};
use packwell::engine::{Shop, template_context};
use packwell::event::EventBody;
use packwell::profile::Profile;
use packwell::render::Templates;
use packwell::replay::Replay;
use packwell::rules::load_rules;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The input up to its first NUL byte is a rule file, `rules/fuzz.toml`; what follows, if
/// anything, is a note template, `templates/notes/fuzz.hbs`, beside a copy of the example
/// templates. The folder is loaded as `validate` and the service load it; rules that load
/// decide the example order.
pub fn rules_folder(data: &[u8]) {
    let out = load_rules_folder(data);
    let Some(rules) = out.rules else {
        assert!(
            out.errors().next().is_some(),
            "no rules and no error to say why"
        );
        return;
    };
    let shop = Shop::default();
    let mut replay = Replay::new(&rules, key(), &shop);
    apply_checked(&mut replay, &example_event(), true);
}

/// The folder of [`rules_folder`]'s input, loaded.
pub fn load_rules_folder(data: &[u8]) -> packwell::rules::LoadOutcome {
    let base = scratch().join("rules_folder");
    let (rules_dir, templates_dir) = (base.join("rules"), base.join("templates"));
    if !templates_dir.is_dir() {
        std::fs::create_dir_all(&rules_dir).expect("create the rules folder");
        copy_folder(&repo_root().join("templates"), &templates_dir);
    }
    let (rule_file, note) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    std::fs::write(rules_dir.join("fuzz.toml"), rule_file).expect("write the rule file");
    let note_path = templates_dir.join("notes/fuzz.hbs");
    match note {
        Some(text) => std::fs::write(&note_path, text).expect("write the note"),
        None => {
            let _ = std::fs::remove_file(&note_path);
        }
    }
    load_rules(&rules_dir, &templates_dir)
}

// ---------------------------------------------------------------------------------------------
// template

/// The first byte picks the part (a note; an e-mail's HTML without a text part, its subject,
/// its text part) and the data (the example order, or one with the largest amounts and
/// unusual names); the rest is the template. The folder is loaded (parsed and checked as
/// `validate` does) and, when it is clean, the template is rendered.
pub fn template(data: &[u8]) {
    let Some((&selector, _)) = data.split_first() else {
        return;
    };
    let Some(Ok(templates)) = load_template(data) else {
        return;
    };
    let part = selector % 4;
    let contexts = template_contexts();
    let ctx = &contexts[usize::from(selector / 4) % contexts.len()];
    if part == 0 {
        let _ = templates.render_note("fuzz", ctx);
    } else if let Ok(email) = templates.render_email("fuzz", ctx) {
        assert!(
            !email.subject.contains(['\r', '\n']),
            "a subject with a line break: {:?}",
            email.subject
        );
    }
}

/// The templates folder of [`template`]'s input, loaded; `None` for an empty input.
pub fn load_template(
    data: &[u8],
) -> Option<Result<Templates, Vec<packwell::render::TemplateIssue>>> {
    let (&selector, text) = data.split_first()?;
    let dir = scratch().join("template");
    let notes = dir.join("notes");
    let email = dir.join("emails/fuzz");
    let part = selector % 4;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(if part == 0 { &notes } else { &email }).expect("create a folder");
    let write = |path: PathBuf, fuzzed: bool, default: &str| {
        let bytes = if fuzzed { text } else { default.as_bytes() };
        std::fs::write(path, bytes).expect("write a template");
    };
    if part == 0 {
        write(notes.join("fuzz.hbs"), true, "");
    } else {
        write(
            email.join("subject.hbs"),
            part == 2,
            "Thanks, {{customer.first_name}}",
        );
        write(
            email.join("html.hbs"),
            part == 1,
            "<p>Dear {{customer.first_name}}, {{money order.total order.currency}}</p>",
        );
        if part == 3 {
            write(email.join("text.hbs"), true, "");
        }
    }
    Some(Templates::load(&dir))
}

/// Template data of docs/REFERENCE.md §6: the example order, and an order at the edges of
/// what an event may hold.
fn template_contexts() -> &'static [Value] {
    static CONTEXTS: OnceLock<Vec<Value>> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        // The largest amount an event may carry; coupons in the data are text, as large as a
        // `Decimal` goes.
        let order_max = packwell::event::bounds::MAX_AMOUNT.to_string();
        let max = "79228162514264337593543950335";
        let mut edge: Value = serde_json::from_str(EXAMPLE_ORDER).expect("the example order");
        edge["event_id"] = json!("ev-edge");
        edge["order"]["id"] = json!("O-EDGE");
        edge["order"]["total"] = json!(order_max);
        edge["order"]["items"] = json!([{"sku": "S", "name": "\u{202e}<b>&\"'{{x}}", "category": "books",
            "quantity": 1, "unit_price": order_max}]);
        let customer = &mut edge["order"]["customer"];
        customer["id"] = json!("C-EDGE");
        customer["first_name"] = json!("Zoë\u{0}\r\nBcc: x@example.com");
        customer["locale"] = json!("ar-EG-u-nu-arab");
        let edge_coupon = json!({"code": "EDGE-0000", "title": null, "amount": max,
            "currency": "JPY", "min_order": max, "expires_on": "9999-12-31"});
        let example_coupon = json!({"code": "WELCOME-ABCD", "title": "Welcome back", "amount": "5.00",
            "currency": "EUR", "min_order": "30.00", "expires_on": "2027-01-31"});
        let delivery = json!({"delivered_at": "2026-11-23T10:00:00Z", "late_days": 2});
        [
            (serde_json::from_str(EXAMPLE_ORDER).expect("the example order"), example_coupon, None),
            (edge, edge_coupon, Some(delivery)),
        ]
        .into_iter()
        .map(|(value, coupon, delivery)| {
            let event = packwell::event::event_from_value(&value).expect("a valid event");
            let EventBody::OrderPlaced(order) = &event.body else {
                panic!("not an order");
            };
            let mut profile = Profile::new(&order.customer.id);
            profile
                .apply_placed(order, event.occurred_at)
                .expect("one order folds");
            let mut ctx = template_context(
                &profile,
                order,
                &[coupon],
                event.occurred_at,
                delivery,
                &Shop::default(),
            );
            ctx["unsubscribe_url"] = json!("https://shop.example/u/abc.def");
            ctx
        })
        .collect()
    })
}
