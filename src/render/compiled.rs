//! Templates compiled a second time, into a small program that renders straight from the JSON
//! data: text, values, `#if`/`#unless`/`#each` and the `money` and `date` helpers, which is
//! all a marketer's template usually holds.
//!
//! handlebars-rust renders through a general machinery (a render context, block contexts,
//! every value looked up by a path it builds, every helper argument copied), which costs
//! several times what the output does. The program keeps its exact semantics for what it
//! supports and renders nothing it is not sure of: a template using anything else is not
//! compiled, and a render that meets anything handlebars would treat specially (a missing
//! value, which strict mode reports; an object to iterate; a value a helper rejects) gives
//! up, and handlebars renders the template instead, with its own output or error. So the
//! output is handlebars' byte for byte; the tests compare the two.

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::{JsonRender, JsonTruthy, PathSeg};
use serde_json::Value;

use super::DataNeeds;
use super::format::{decimal_of, parse_date, with_date, with_money};

/// A template as a program; see the module documentation.
#[derive(Debug)]
pub(crate) struct Program {
    nodes: Vec<Node>,
    /// Bytes of text in the template: the output's first allocation.
    text_len: usize,
    /// What the template reads of the data.
    needs: DataNeeds,
}

/// A path of plain names from the current scope (`customer.first_name`, `name` inside
/// `#each`); `../`, `@root`, `@index` and block parameters are left to handlebars.
type Path = Box<[Box<str>]>;

#[derive(Debug)]
enum Node {
    Text(Box<str>),
    Value {
        path: Path,
        escape: bool,
    },
    Money {
        amount: Arg,
        currency: Arg,
        escape: bool,
    },
    Date {
        date: Arg,
        escape: bool,
    },
    If {
        cond: Arg,
        positive: bool,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Each {
        list: Path,
        body: Vec<Node>,
        otherwise: Option<Vec<Node>>,
    },
}

#[derive(Debug)]
enum Arg {
    Path(Path),
    Literal(Value),
}

/// The render met something only handlebars knows how to treat.
struct GiveUp;

impl Program {
    /// The program of a template, or `None` when it uses what the program does not support.
    /// `escape_html`: values are HTML-escaped (the registry of `html.hbs`), except in `{{{ }}}`.
    pub(crate) fn compile(template: &Template, escape_html: bool) -> Option<Program> {
        let mut c = Compiler {
            escape_html,
            text_len: 0,
            depth: 0,
            needs: DataNeeds::default(),
        };
        let nodes = c.elements(template)?;
        Some(Program {
            nodes,
            text_len: c.text_len,
            needs: c.needs,
        })
    }

    /// The parts of the data the template reads: every path from the top of the data, to its
    /// second name (what `#each` walks and what a path ends in is read whole).
    pub(crate) fn needs(&self) -> &DataNeeds {
        &self.needs
    }

    /// The output, or `None` when handlebars must render this data instead.
    pub(crate) fn render(&self, data: &Value) -> Option<String> {
        // As the helpers read it (`locale_of`): the data's top-level `locale`.
        let locale = data.get("locale").and_then(Value::as_str).unwrap_or("en");
        let mut out = String::with_capacity(self.text_len + self.text_len / 4 + 64);
        render_nodes(&self.nodes, data, locale, &mut out).ok()?;
        Some(out)
    }
}

struct Compiler {
    escape_html: bool,
    text_len: usize,
    /// `#each` blocks around the element: inside one, paths are read from its items.
    depth: usize,
    needs: DataNeeds,
}

impl Compiler {
    fn elements(&mut self, t: &Template) -> Option<Vec<Node>> {
        let mut nodes = Vec::with_capacity(t.elements.len());
        for element in &t.elements {
            match element {
                TemplateElement::RawString(s) => {
                    self.text_len += s.len();
                    nodes.push(Node::Text(s.as_str().into()));
                }
                TemplateElement::Comment(_) => {}
                TemplateElement::Expression(ht) => {
                    nodes.push(self.expression(ht, self.escape_html)?)
                }
                TemplateElement::HtmlExpression(ht) => nodes.push(self.expression(ht, false)?),
                TemplateElement::HelperBlock(ht) => nodes.push(self.block(ht)?),
                _ => return None,
            }
        }
        Some(nodes)
    }

    fn expression(&mut self, ht: &HelperTemplate, escape: bool) -> Option<Node> {
        if ht.block || ht.block_param.is_some() || !ht.hash.is_empty() {
            return None;
        }
        let name = ht.name.as_name()?;
        if ht.params.is_empty() {
            // handlebars calls a helper of that name before it looks the name up.
            if super::is_helper(name) {
                return None;
            }
            let Parameter::Path(path) = &ht.name else {
                return None;
            };
            return Some(Node::Value {
                path: self.path(path)?,
                escape,
            });
        }
        match (name, ht.params.as_slice()) {
            ("money", [amount, currency]) => Some(Node::Money {
                amount: self.arg(amount)?,
                currency: self.arg(currency)?,
                escape,
            }),
            ("date", [date]) => Some(Node::Date {
                date: self.arg(date)?,
                escape,
            }),
            _ => None,
        }
    }

    fn block(&mut self, ht: &HelperTemplate) -> Option<Node> {
        if ht.block_param.is_some() || !ht.hash.is_empty() {
            return None;
        }
        let [param] = ht.params.as_slice() else {
            return None;
        };
        match ht.name.as_name()? {
            name @ ("if" | "unless") => Some(Node::If {
                cond: self.arg(param)?,
                positive: name == "if",
                then: self.part(&ht.template)?,
                otherwise: self.part(&ht.inverse)?,
            }),
            "each" => {
                let Parameter::Path(path) = param else {
                    return None;
                };
                let list = self.path(path)?;
                // `{{else}}` renders in the outer scope, the body in the items'.
                let otherwise = match &ht.inverse {
                    Some(t) => Some(self.elements(t)?),
                    None => None,
                };
                self.depth += 1;
                let body = self.part(&ht.template);
                self.depth -= 1;
                Some(Node::Each {
                    list,
                    body: body?,
                    otherwise,
                })
            }
            _ => None,
        }
    }

    fn part(&mut self, t: &Option<Template>) -> Option<Vec<Node>> {
        match t {
            Some(t) => self.elements(t),
            None => Some(Vec::new()),
        }
    }

    fn arg(&mut self, param: &Parameter) -> Option<Arg> {
        match param {
            Parameter::Path(path) => self.path(path).map(Arg::Path),
            Parameter::Literal(value) => Some(Arg::Literal(value.clone())),
            _ => None,
        }
    }

    /// The names of a path made of names only (`this` is dropped by the parser already),
    /// noted in the needs when it is read from the top of the data.
    fn path(&mut self, path: &handlebars::Path) -> Option<Path> {
        let handlebars::Path::Relative((segs, _)) = path else {
            return None;
        };
        let names: Path = segs
            .iter()
            .map(|seg| match seg {
                PathSeg::Named(name) => Some(name.as_str().into()),
                _ => None,
            })
            .collect::<Option<_>>()?;
        if self.depth == 0 {
            self.needs.add(&names);
        }
        Some(names)
    }
}

fn render_nodes(
    nodes: &[Node],
    scope: &Value,
    locale: &str,
    out: &mut String,
) -> Result<(), GiveUp> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Value { path, escape } => {
                let value = lookup(scope, path)?;
                match value {
                    Value::String(s) => push(out, s, *escape),
                    Value::Null => {}
                    other => push(out, &other.render(), *escape),
                }
            }
            Node::Money {
                amount,
                currency,
                escape,
            } => {
                let amount = decimal_of(present(scope, amount)?).map_err(|_| GiveUp)?;
                let Value::String(currency) = present(scope, currency)? else {
                    return Err(GiveUp);
                };
                with_money(&amount, currency, locale, |text| push(out, text, *escape))
                    .map_err(|_| GiveUp)?;
            }
            Node::Date { date, escape } => {
                let Value::String(text) = present(scope, date)? else {
                    return Err(GiveUp);
                };
                let date = parse_date(text).ok_or(GiveUp)?;
                with_date(date, locale, |text| push(out, text, *escape)).map_err(|_| GiveUp)?;
            }
            Node::If {
                cond,
                positive,
                then,
                otherwise,
            } => {
                let value = match cond {
                    Arg::Path(path) => lookup(scope, path)?,
                    Arg::Literal(value) => value,
                };
                let chosen = if value.is_truthy(false) == *positive {
                    then
                } else {
                    otherwise
                };
                render_nodes(chosen, scope, locale, out)?;
            }
            Node::Each {
                list,
                body,
                otherwise,
            } => match (lookup(scope, list)?, otherwise) {
                (Value::Array(items), None) => {
                    for item in items {
                        render_nodes(body, item, locale, out)?;
                    }
                }
                (Value::Array(items), Some(otherwise)) if items.is_empty() => {
                    render_nodes(otherwise, scope, locale, out)?;
                }
                (Value::Array(items), Some(_)) => {
                    for item in items {
                        render_nodes(body, item, locale, out)?;
                    }
                }
                // An object's entries, and strict mode's error for a scalar without {{else}}.
                (Value::Object(_), _) | (_, None) => return Err(GiveUp),
                (_, Some(otherwise)) => render_nodes(otherwise, scope, locale, out)?,
            },
        }
    }
    Ok(())
}

/// A path's value; a missing one is strict mode's error, which handlebars reports.
fn lookup<'v>(scope: &'v Value, path: &[Box<str>]) -> Result<&'v Value, GiveUp> {
    let mut value = scope;
    for name in path {
        value = match value {
            // The data's objects are small: comparing a few keys costs less than hashing one
            // (serde_json's ordered map hashes with SipHash).
            Value::Object(map) if map.len() <= 16 => map
                .iter()
                .find(|(k, _)| k.as_str() == &**name)
                .map(|(_, v)| v),
            Value::Object(map) => map.get(&**name),
            Value::Array(items) => items.get(name.parse::<usize>().map_err(|_| GiveUp)?),
            _ => None,
        }
        .ok_or(GiveUp)?;
    }
    Ok(value)
}

/// A helper's argument: `money` and `date` reject a missing or null one with a message of
/// their own, which handlebars gives.
fn present<'v>(scope: &'v Value, arg: &'v Arg) -> Result<&'v Value, GiveUp> {
    let value = match arg {
        Arg::Path(path) => lookup(scope, path)?,
        Arg::Literal(value) => value,
    };
    if value.is_null() {
        return Err(GiveUp);
    }
    Ok(value)
}

fn push(out: &mut String, text: &str, escape: bool) {
    if escape {
        escape_html_into(out, text);
    } else {
        out.push_str(text);
    }
}

/// handlebars' `html_escape`, written into the output instead of a new string.
fn escape_html_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['<', '>', '"', '&', '\'', '`', '=']) {
        out.push_str(&rest[..at]);
        let (entity, len) = match rest.as_bytes()[at] {
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'"' => ("&quot;", 1),
            b'&' => ("&amp;", 1),
            b'\'' => ("&#x27;", 1),
            b'`' => ("&#x60;", 1),
            _ => ("&#x3D;", 1),
        };
        out.push_str(entity);
        rest = &rest[at + len..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn escaping_is_handlebars_own() {
        for text in [
            "",
            "plain",
            "<a href=\"x\">Tom & 'Jerry' `=`</a>",
            "Zoë <李>",
        ] {
            let mut out = String::new();
            escape_html_into(&mut out, text);
            assert_eq!(out, handlebars::html_escape(text), "{text:?}");
        }
    }

    /// Templates of every shape the program supports, and a few it gives up on.
    const SOURCES: &[&str] = &[
        "Dear {{customer.first_name}}, {{customer.last_name}}!",
        "{{#if coupon}}Code {{coupon.code}}: {{money coupon.amount coupon.currency}}\
         {{#if coupon.min_order}} (from {{money coupon.min_order coupon.currency}}){{/if}}, \
         until {{date coupon.expires_on}}.{{/if}}",
        "{{#each order.items}}\n- {{quantity}} x {{name}} at {{unit_price}}\n{{/each}}\nend",
        "{{#each order.items}}{{name}}{{else}}nothing{{/each}}",
        "{{#unless coupon}}none{{else}}{{coupon.code}}{{/unless}}",
        "{{#if a}}A{{else if b}}B{{else}}C{{/if}}",
        "{{#if true}}yes{{/if}}{{#if 0}}zero{{else}}no{{/if}}{{money \"10.5\" \"EUR\"}}",
        "{{{tag}}} {{tag}} {{n}} {{flag}} {{list}} {{obj}} {{order.items.0.name}}",
        "  {{#each list}}\n  * {{this}}\n  {{/each}}\n{{!-- comment --}}{{~ a ~}}  x",
        "{{date order.placed_at}} {{money n \"usd\"}} {{money s \"EUR\"}}",
        "{{#each obj}}{{@key}}{{/each}}",
        "{{#each order.items as |i|}}{{i.name}}{{/each}}{{lookup obj \"k\"}}",
        "{{#with customer}}{{first_name}}{{/with}}{{../a}}{{@root.a}}",
    ];

    fn registry(html: bool, source: &str) -> (Handlebars<'static>, Option<Program>) {
        let mut hb = super::super::registry(html);
        let template =
            Template::compile_with_name(source, "t".to_owned()).expect("the template parses");
        let program = Program::compile(&template, html);
        hb.register_template("t", template);
        (hb, program)
    }

    use handlebars::Handlebars;

    /// Where the program renders, handlebars renders the same bytes; where it gives up,
    /// handlebars is left to render (or to fail).
    fn check(html: bool, source: &str, data: &Value) -> bool {
        let (hb, program) = registry(html, source);
        let Some(program) = program else {
            return false;
        };
        let ours = program.render(data);
        let theirs = hb.render("t", data);
        if let Some(ours) = &ours {
            assert_eq!(
                Some(ours),
                theirs.as_ref().ok(),
                "{source:?} with {data}: handlebars gave {theirs:?}"
            );
        }
        ours.is_some()
    }

    fn example() -> Value {
        json!({
            "locale": "de-DE",
            "customer": {"first_name": "Zoë <\"&'`=>", "last_name": null},
            "coupon": {"code": "WELCOME-1", "amount": "5.00", "currency": "EUR",
                       "min_order": "30.00", "expires_on": "2026-12-20"},
            "order": {"items": [{"quantity": 2, "name": "Tea & <b>", "unit_price": "4.50"},
                                {"quantity": 1, "name": "Book", "unit_price": "12.00"}],
                      "placed_at": "2026-11-20T09:30:00+01:00"},
            "a": false, "b": 0, "tag": "<i>", "n": 12.50, "s": "3", "flag": true,
            "list": ["x", 2, null], "obj": {"k": "v"}
        })
    }

    #[test]
    fn the_program_renders_what_handlebars_renders() {
        let data = example();
        let mut rendered = 0;
        for source in SOURCES {
            for html in [false, true] {
                rendered += usize::from(check(html, source, &data));
            }
        }
        // Every supported shape above is rendered by the program, not handed back.
        assert_eq!(rendered, 2 * 10, "templates the program rendered");
    }

    #[test]
    fn the_program_gives_up_where_handlebars_reports() {
        let (_, program) = registry(false, "{{customer.missing}}");
        let program = program.expect("compiles");
        assert_eq!(program.render(&example()), None);
        let (_, program) = registry(true, "{{money coupon.nothing \"EUR\"}}");
        assert_eq!(program.expect("compiles").render(&example()), None);
        let (_, program) = registry(true, "{{date customer.last_name}}");
        assert_eq!(program.expect("compiles").render(&example()), None);
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1000i64..1000).prop_map(|n| json!(n)),
            "[a-z<>&\"' =`0-9.-]{0,8}".prop_map(Value::String),
            prop_oneof![
                Just("10.00"),
                Just("0"),
                Just("2026-11-20"),
                Just("2026-11-20T23:30:00-05:00"),
                Just("EUR"),
                Just("usd"),
                Just("JPY"),
                Just("en-US"),
                Just("fr"),
                Just("zz")
            ]
            .prop_map(|s| Value::String(s.to_owned())),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("code"),
                            Just("amount"),
                            Just("currency"),
                            Just("min_order"),
                            Just("expires_on"),
                            Just("name"),
                            Just("quantity"),
                            Just("items"),
                        ],
                        inner
                    ),
                    0..5
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn any_data_renders_as_handlebars_renders(
            locale in json_leaf(),
            coupon in json_value(),
            order in json_value(),
            a in json_leaf(),
            html in any::<bool>(),
        ) {
            let mut data = example();
            data["locale"] = locale;
            data["coupon"] = coupon;
            data["order"] = order;
            data["a"] = a;
            for source in SOURCES {
                check(html, source, &data);
            }
        }
    }
}
