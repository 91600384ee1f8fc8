//! The printable card of a parcel: the note in a handwritten style and each coupon with its
//! amount, code, expiry and a QR code of the code, on an A6 card (105 × 148 mm) with print CSS.

use crate::engine::{CouponGiven, Decision, Shop};
use crate::money::parse_amount;
use crate::render::{format_date, format_money};
use handlebars::html_escape;
use qrcode::QrCode;
use qrcode::render::svg;

/// The card's HTML, a whole document. `locale` formats amounts and dates as the customer
/// reads them.
pub fn render(decision: &Decision, shop: &Shop, locale: &str) -> String {
    let mut sections = String::new();
    for insert in &decision.inserts {
        if let Some(note) = &insert.note {
            sections.push_str(&format!(
                "<section class=\"note\">{}</section>\n",
                paragraphs(&note.text)
            ));
        }
    }
    for insert in &decision.inserts {
        if let Some(coupon) = &insert.coupon {
            sections.push_str(&coupon_section(coupon, insert.title.as_deref(), locale));
        }
    }
    if sections.is_empty() {
        sections.push_str("<p class=\"empty\">Nothing to print for this parcel.</p>\n");
    }
    format!(
        r#"<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<title>Card for order {order}</title>
<style>
@page {{ size: A6 portrait; margin: 0; }}
* {{ box-sizing: border-box; }}
html, body {{ margin: 0; padding: 0; background: #fff; color: #1a1a1a; }}
.card {{ width: 105mm; min-height: 148mm; padding: 9mm 8mm; display: flex; flex-direction: column; gap: 6mm;
  font-family: Georgia, "Times New Roman", serif; }}
.shop {{ font-size: 9pt; letter-spacing: .12em; text-transform: uppercase; color: #555; }}
.note {{ font-family: "Segoe Script", "Bradley Hand", "Comic Neue", "Comic Sans MS", cursive; font-size: 13pt; line-height: 1.45; }}
.note p {{ margin: 0 0 .6em; }}
.coupon {{ border: .4mm dashed #333; border-radius: 2mm; padding: 4mm; display: flex; gap: 4mm; align-items: center; }}
.coupon .qr svg {{ width: 26mm; height: 26mm; display: block; }}
.coupon .amount {{ font-size: 20pt; font-weight: bold; }}
.coupon .code {{ font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 11pt; letter-spacing: .04em; margin: 1mm 0; white-space: nowrap; }}
.coupon .terms {{ font-size: 8pt; color: #444; }}
.empty {{ font-size: 11pt; color: #555; }}
@media screen {{ body {{ background: #eee; padding: 8mm; }} .card {{ background: #fff; box-shadow: 0 1mm 4mm rgba(0,0,0,.2); margin: auto; }} }}
@media print {{ .card {{ page-break-after: always; }} }}
</style>
</head>
<body>
<main class="card" data-order-id="{order}">
<div class="shop">{shop}</div>
{sections}</main>
</body>
</html>
"#,
        lang = html_escape(language(locale)),
        order = html_escape(&decision.order_id),
        shop = html_escape(&shop.name),
    )
}

/// A note's text as paragraphs: blank lines separate them, single line breaks stay.
fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", html_escape(p).replace('\n', "<br>")))
        .collect()
}

fn coupon_section(coupon: &CouponGiven, title: Option<&str>, locale: &str) -> String {
    let amount = money(&coupon.amount, &coupon.currency, locale);
    let mut terms = Vec::new();
    if let Some(min) = &coupon.min_order {
        terms.push(format!(
            "On orders from {}.",
            money(min, &coupon.currency, locale)
        ));
    }
    let expires = chrono::NaiveDate::parse_from_str(&coupon.expires_on, "%Y-%m-%d")
        .ok()
        .and_then(|d| format_date(d, locale).ok())
        .unwrap_or_else(|| coupon.expires_on.clone());
    terms.push(format!("Valid until {expires}."));
    format!(
        "<section class=\"coupon\">\n<div class=\"qr\">{qr}</div>\n<div>\n<div class=\"amount\">{amount}</div>\n\
         <div class=\"title\">{title}</div>\n<div class=\"code\">{code}</div>\n<div class=\"terms\">{terms}</div>\n</div>\n</section>\n",
        qr = qr_svg(&coupon.code),
        amount = html_escape(&amount),
        title = html_escape(title.unwrap_or("for your next order")),
        code = html_escape(&coupon.code),
        terms = html_escape(&terms.join(" ")),
    )
}

/// An amount in the customer's way of writing it; the plain decimal and currency when the
/// locale or currency cannot be formatted.
fn money(amount: &str, currency: &str, locale: &str) -> String {
    parse_amount(amount)
        .ok()
        .and_then(|d| format_money(&d, currency, locale).ok())
        .unwrap_or_else(|| format!("{amount} {currency}"))
}

/// A QR code of the coupon code as inline SVG (scanned at the till); empty if the code
/// cannot be encoded, which leaves the printed code.
fn qr_svg(code: &str) -> String {
    match QrCode::new(code.as_bytes()) {
        Ok(qr) => qr
            .render::<svg::Color<'_>>()
            .min_dimensions(120, 120)
            .quiet_zone(false)
            .build()
            .replacen("<?xml version=\"1.0\" standalone=\"yes\"?>", "", 1),
        Err(e) => {
            tracing::warn!("no QR code for coupon {code}: {e}");
            String::new()
        }
    }
}

fn language(locale: &str) -> &str {
    locale.split(['-', '_']).next().unwrap_or("en")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{GivenInsert, NoteGiven};

    fn decision(inserts: Vec<GivenInsert>) -> Decision {
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "order_id": "O-<1>", "customer_id": "C-1", "warehouse": "WH-BER",
            "rules_version": "sha256:00", "decided_at": "2026-11-20T10:00:00Z", "segments": [],
            "inserts": [], "followups": [], "skipped": []
        }))
        .map(|mut d: Decision| {
            d.inserts = inserts;
            d
        })
        .expect("a decision")
    }

    fn insert(kind: &str) -> GivenInsert {
        GivenInsert {
            insert_id: format!("{kind}-1"),
            kind: kind.into(),
            rule_id: "welcome".into(),
            variant: None,
            title: None,
            quantity: 1,
            sku: None,
            coupon: None,
            note: None,
        }
    }

    #[test]
    fn the_card_has_the_note_and_the_coupon_with_a_qr_code() {
        let mut note = insert("note");
        note.note = Some(NoteGiven {
            text: "Dear <Ada>,\nthank you!\n\nAnna".into(),
        });
        let mut coupon = insert("coupon");
        coupon.coupon = Some(CouponGiven {
            code: "THANKS-7KQ2M9XW4PJR".into(),
            amount: "10.00".into(),
            currency: "EUR".into(),
            min_order: Some("30.00".into()),
            expires_on: "2027-01-19".into(),
        });
        let shop = Shop {
            name: "Pet & Co".into(),
            url: "https://shop.example".into(),
        };
        let html = render(&decision(vec![note, coupon]), &shop, "de-DE");
        assert!(
            html.contains("<p>Dear &lt;Ada&gt;,<br>thank you!</p><p>Anna</p>"),
            "{html}"
        );
        assert!(html.contains("THANKS-7KQ2M9XW4PJR"));
        assert!(html.contains("<svg"), "a QR code: {html}");
        assert!(html.contains("10,00"), "German amount: {html}");
        assert!(html.contains("Pet &amp; Co") && html.contains("O-&lt;1&gt;"));
        assert!(html.contains("size: A6"));
    }

    #[test]
    fn a_parcel_without_note_or_coupon_says_so() {
        let shop = Shop {
            name: "Shop".into(),
            url: String::new(),
        };
        let html = render(&decision(vec![insert("gift")]), &shop, "en");
        assert!(html.contains("Nothing to print"), "{html}");
    }
}
