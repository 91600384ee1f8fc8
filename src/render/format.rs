//! The `money` and `date` helpers and the formatting behind them (CLDR data through ICU4X),
//! with what they format remembered per thread: an e-mail or a note formats the same few
//! amounts and days in the same few locales over and over, and ICU formatting costs
//! microseconds each time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, NaiveDate};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderErrorReason, ScopedJson,
};
use icu_datetime::input::Date;
use icu_datetime::{DateTimeFormatter, fieldsets};
use icu_experimental::dimension::currency::CurrencyType;
use icu_experimental::dimension::currency::formatter::CurrencyFormatter;
use icu_locale_core::Locale;
use rust_decimal::Decimal;
use serde_json::Value;

use super::FormatError;

/// `{{money amount currency}}`: an amount in the customer's locale (the data's `locale`). Public
/// so that a benchmark's plain registry formats exactly as templates do.
pub struct MoneyHelper;

impl HelperDef for MoneyHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let amount = argument(h, 0, "money", "amount")?;
        let currency = argument(h, 1, "money", "currency")?;
        let amount = decimal_of(amount).map_err(helper_error)?;
        let Value::String(currency) = currency else {
            return Err(helper_error(FormatError(format!(
                "money: the currency must be a code like \"EUR\", found {currency}"
            ))));
        };
        let text = format_money(&amount, currency, locale_of(ctx)).map_err(helper_error)?;
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

/// `{{date d}}`: a date, or an RFC 3339 time's date, in the customer's locale.
pub struct DateHelper;

impl HelperDef for DateHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let value = argument(h, 0, "date", "date")?;
        let date = match value {
            Value::String(s) => parse_date(s),
            _ => None,
        }
        .ok_or_else(|| {
            helper_error(FormatError(format!(
                "date: expected a date (YYYY-MM-DD) or an RFC 3339 timestamp, found {value}"
            )))
        })?;
        let text = format_date(date, locale_of(ctx)).map_err(helper_error)?;
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

fn argument<'a>(
    h: &'a Helper<'_>,
    index: usize,
    helper: &str,
    what: &str,
) -> Result<&'a Value, handlebars::RenderError> {
    let Some(param) = h.param(index) else {
        return Err(helper_error(FormatError(format!(
            "{helper}: the {what} argument is missing"
        ))));
    };
    let name = param
        .relative_path()
        .cloned()
        .unwrap_or_else(|| what.to_owned());
    if param.is_value_missing() {
        return Err(helper_error(FormatError(format!(
            "{helper}: {name} is missing from the data"
        ))));
    }
    match param.value() {
        Value::Null => Err(helper_error(FormatError(format!(
            "{helper}: {name} is null here; put the call inside {{{{#if {name}}}}}"
        )))),
        value => Ok(value),
    }
}

fn helper_error(e: FormatError) -> handlebars::RenderError {
    RenderErrorReason::Other(e.0).into()
}

fn locale_of(ctx: &Context) -> &str {
    ctx.data()
        .get("locale")
        .and_then(Value::as_str)
        .unwrap_or("en")
}

/// Reads a money amount from JSON exactly: a decimal string, or a JSON number by its text
/// (the crate's serde_json keeps numbers' text), never through a float.
pub(crate) fn decimal_of(value: &Value) -> Result<Decimal, FormatError> {
    let number;
    let text = match value {
        Value::String(s) => s.trim(),
        Value::Number(n) => {
            number = n.to_string();
            number.as_str()
        }
        other => {
            return Err(FormatError(format!(
                "money: the amount must be a decimal like \"10.00\", found {other}"
            )));
        }
    };
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| {
            FormatError(format!(
                "money: the amount must be a decimal like \"10.00\", found {text:?}"
            ))
        })
}

pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    // The usual shapes first, without chrono's format parser: YYYY-MM-DD, and a timestamp
    // starting so, which "%Y-%m-%d" cannot parse (it would find input left over).
    if let Some(prefix) = s.get(..10)
        && let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *prefix.as_bytes()
        && [y0, y1, y2, y3, m0, m1, d0, d1]
            .iter()
            .all(u8::is_ascii_digit)
    {
        if s.len() == 10 {
            let n = |digits: &[u8]| {
                digits
                    .iter()
                    .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
            };
            let date =
                NaiveDate::from_ymd_opt(n(&[y0, y1, y2, y3]) as i32, n(&[m0, m1]), n(&[d0, d1]));
            if date.is_some() {
                return date;
            }
        } else if matches!(s.as_bytes()[10], b'T' | b't' | b' ') {
            return DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|dt| dt.date_naive());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        // A timestamp's date is the date where it was written (its own offset): the customer's
        // time zone is not part of a template's data.
        .or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|dt| dt.date_naive())
        })
}

/// Formats `amount` in `currency` (ISO 4217) for a BCP 47 locale, with the currency's own
/// number of decimals (CLDR data through ICU4X); an unknown or unsupported locale formats as
/// English.
pub fn format_money(amount: &Decimal, currency: &str, locale: &str) -> Result<String, FormatError> {
    with_money(amount, currency, locale, str::to_owned)
}

/// [`format_money`], handing the text to `use_it` where it is remembered, without a copy.
pub(crate) fn with_money<R>(
    amount: &Decimal,
    currency: &str,
    locale: &str,
    use_it: impl FnOnce(&str) -> R,
) -> Result<R, FormatError> {
    let code = currency.trim();
    if code.len() != 3 || !code.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(FormatError(format!(
            "money: the currency must be a code like \"EUR\", found {currency:?}"
        )));
    }
    let b = code.as_bytes();
    let key = MoneyKey {
        code: [
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ],
        // The text of the amount (its scale included: "10.0" and "10.00" differ) is what ICU
        // formats, so the key is the decimal's exact representation, not its value.
        mantissa: amount.mantissa(),
        scale: amount.scale(),
        negative: amount.is_sign_negative(),
    };
    remembered(
        locale,
        |m| m.money.get(&key).map(|t| &**t),
        || format_money_uncached(amount, &code.to_ascii_uppercase(), locale),
        |m, text| {
            m.money.insert(key, text);
        },
        use_it,
    )
}

/// `code`: three upper-case ASCII letters.
fn format_money_uncached(
    amount: &Decimal,
    code: &str,
    locale: &str,
) -> Result<String, FormatError> {
    let currency_type = CurrencyType::try_from_str(code)
        .map_err(|_| FormatError(format!("money: unknown currency {code:?}")))?;
    let value = fixed_decimal::Decimal::try_from_str(&amount.to_string())
        .map_err(|_| FormatError(format!("money: cannot format the amount {amount}")))?;
    let locale = resolve_locale(locale);
    with_cached(
        &CURRENCY_FORMATTERS,
        format!("{locale}/{code}"),
        || {
            CurrencyFormatter::try_new_symbol((&locale).into(), currency_type, Default::default())
                .map_err(|e| FormatError(format!("money: no format for {code} in {locale}: {e}")))
        },
        |formatter| formatter.format_fixed_decimal(&value).to_string(),
    )
}

/// Formatters are costly to build (locale data lookups) and a render uses a handful of them,
/// so each thread keeps the ones it built. Keys come from customers' locales: the caches are
/// cleared when they grow past a bound rather than growing with bad input.
const FORMATTER_CACHE_LIMIT: usize = 256;

type Cache<T> = std::thread::LocalKey<RefCell<HashMap<String, T>>>;

thread_local! {
    static CURRENCY_FORMATTERS: RefCell<HashMap<String, CurrencyFormatter<icu_decimal::DecimalFormatter>>> =
        Default::default();
    static DATE_FORMATTERS: RefCell<HashMap<String, DateTimeFormatter<fieldsets::YMD>>> =
        Default::default();
    static RESOLVED_LOCALES: RefCell<HashMap<String, Locale>> = Default::default();
}

fn with_cached<T, R>(
    cache: &'static Cache<T>,
    key: String,
    build: impl FnOnce() -> Result<T, FormatError>,
    use_it: impl FnOnce(&T) -> R,
) -> Result<R, FormatError> {
    cache.with(|cell| {
        let mut map = cell.borrow_mut();
        if !map.contains_key(&key) {
            let built = build()?;
            if map.len() >= FORMATTER_CACHE_LIMIT {
                map.clear();
            }
            map.insert(key.clone(), built);
        }
        map.get(&key)
            .map(use_it)
            .ok_or_else(|| FormatError("formatter cache".into()))
    })
}

/// Formats a date for a BCP 47 locale in its medium length (en "Nov 20, 2026",
/// de "20.11.2026"), in the locale's calendar; an unknown or unsupported locale formats as
/// English.
pub fn format_date(date: NaiveDate, locale: &str) -> Result<String, FormatError> {
    with_date(date, locale, str::to_owned)
}

/// [`format_date`], handing the text to `use_it` where it is remembered, without a copy.
pub(crate) fn with_date<R>(
    date: NaiveDate,
    locale: &str,
    use_it: impl FnOnce(&str) -> R,
) -> Result<R, FormatError> {
    remembered(
        locale,
        |m| m.dates.get(&date).map(|t| &**t),
        || format_date_in(date, &resolve_locale(locale)),
        |m, text| {
            m.dates.insert(date, text);
        },
        use_it,
    )
}

fn format_date_in(date: NaiveDate, locale: &Locale) -> Result<String, FormatError> {
    use chrono::Datelike;
    let month = u8::try_from(date.month()).ok();
    let day = u8::try_from(date.day()).ok();
    let iso = month
        .zip(day)
        .and_then(|(m, d)| Date::try_new_iso(date.year(), m, d).ok())
        .ok_or_else(|| FormatError(format!("date: cannot format {date}")))?;
    with_cached(
        &DATE_FORMATTERS,
        locale.to_string(),
        || {
            DateTimeFormatter::try_new(locale.into(), fieldsets::YMD::medium())
                .map_err(|e| FormatError(format!("date: no date format for {locale}: {e}")))
        },
        |formatter| formatter.format(&iso).to_string(),
    )
}

/// The locale to format with: the customer's when CLDR has data for its language, else English.
/// ICU4X silently falls back to the root locale ("2026 M11 20", "€ 10.00") for a language it
/// has no data for; that is not what a customer should read.
fn resolve_locale(tag: &str) -> Locale {
    if let Some(l) = RESOLVED_LOCALES.with(|c| c.borrow().get(tag).cloned()) {
        return l;
    }
    let resolved = resolve_locale_uncached(tag);
    RESOLVED_LOCALES.with(|c| {
        let mut map = c.borrow_mut();
        if map.len() >= FORMATTER_CACHE_LIMIT {
            map.clear();
        }
        map.insert(tag.to_owned(), resolved.clone());
    });
    resolved
}

fn resolve_locale_uncached(tag: &str) -> Locale {
    let english = || icu_locale_core::locale!("en");
    let tag = tag.trim().replace('_', "-");
    let Ok(locale) = Locale::try_from_str(&tag) else {
        return english();
    };
    if has_own_data(&locale) {
        locale
    } else {
        english()
    }
}

fn has_own_data(locale: &Locale) -> bool {
    static ROOT: OnceLock<Option<String>> = OnceLock::new();
    let Some(probe) = NaiveDate::from_ymd_opt(2026, 11, 20) else {
        return false;
    };
    let root = ROOT.get_or_init(|| format_date_in(probe, &Locale::UNKNOWN).ok());
    match (root, format_date_in(probe, locale)) {
        (Some(root), Ok(own)) => *root != own,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// What was formatted, per locale tag as the data gives it

/// Texts remembered in all locales of a thread, at most: past it they are all forgotten,
/// so hostile or varied data costs formatting time, never memory.
const MEMO_LIMIT: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct MoneyKey {
    code: [u8; 3],
    mantissa: i128,
    scale: u32,
    negative: bool,
}

#[derive(Default)]
struct LocaleMemo {
    money: HashMap<MoneyKey, Box<str>>,
    dates: HashMap<NaiveDate, Box<str>>,
}

#[derive(Default)]
struct Memo {
    entries: usize,
    locales: HashMap<String, LocaleMemo>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::default();
}

/// The text `find` finds for `locale`, or the one `format` makes, remembered with `keep`.
/// Errors are not remembered: they are rare and carry their own message.
fn remembered<R>(
    locale: &str,
    find: impl Fn(&LocaleMemo) -> Option<&str>,
    format: impl FnOnce() -> Result<String, FormatError>,
    keep: impl FnOnce(&mut LocaleMemo, Box<str>),
    use_it: impl FnOnce(&str) -> R,
) -> Result<R, FormatError> {
    MEMO.with(|cell| {
        let memo = cell.borrow();
        if let Some(text) = memo.locales.get(locale).and_then(&find) {
            return Ok(use_it(text));
        }
        // Formatting uses the formatter caches, never this one: no borrow is held across it
        // that it could need.
        drop(memo);
        let text = format()?;
        let out = use_it(&text);
        let mut memo = cell.borrow_mut();
        if memo.entries >= MEMO_LIMIT {
            memo.locales.clear();
            memo.entries = 0;
        }
        memo.entries += 1;
        if !memo.locales.contains_key(locale) {
            memo.locales
                .insert(locale.to_owned(), LocaleMemo::default());
        }
        if let Some(m) = memo.locales.get_mut(locale) {
            keep(m, text.into_boxed_str());
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `parse_date` gave before its shortcuts: chrono's parsers alone.
    fn by_chrono(s: &str) -> Option<NaiveDate> {
        let s = s.trim();
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|dt| dt.date_naive())
        })
    }

    #[test]
    fn dates_parse_as_chrono_parses_them() {
        for s in [
            "2026-11-20",
            " 2026-11-20 ",
            "2026-02-30",
            "2026-13-01",
            "0000-01-01",
            "9999-12-31",
            "+2026-11-20",
            "2026-1-20",
            "20261-11-20",
            "2026-11-20T09:30:00+01:00",
            "2026-11-20t23:30:00-05:00",
            "2026-11-20 23:30:00Z",
            "2026-11-20T25:30:00Z",
            "2026-11-20X",
            "2026-11-20T",
            "२०२६-११-२०",
            "",
        ] {
            assert_eq!(parse_date(s), by_chrono(s), "{s:?}");
        }
    }

    #[test]
    fn remembered_texts_are_the_formatted_ones() {
        let amount = |s: &str| Decimal::from_str_exact(s).expect("decimal");
        for (a, c, l) in [
            ("10.00", "EUR", "de-DE"),
            ("10.0", "eur", "de-DE"),
            ("-0", "USD", "en-US"),
            ("1234.5", "JPY", "ja"),
        ] {
            let first = format_money(&amount(a), c, l).expect("formats");
            let again = format_money(&amount(a), c, l).expect("formats");
            let code = c.to_ascii_uppercase();
            assert_eq!(first, again);
            assert_eq!(
                first,
                format_money_uncached(&amount(a), &code, l).expect("formats")
            );
        }
        let day = NaiveDate::from_ymd_opt(2026, 11, 20).expect("date");
        assert_eq!(
            format_date(day, "de").expect("formats"),
            format_date_in(day, &resolve_locale("de")).expect("formats")
        );
    }
}
