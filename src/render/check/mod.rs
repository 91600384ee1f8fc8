//! The check `packwell validate` runs over a template: its size and nesting first, then its
//! syntax (with messages a marketer can act on), then every name it reads or calls, by a walk
//! over the parsed syntax tree against the data of docs/REFERENCE.md §6 ([`shape`]).

use std::path::Path;

use handlebars::template::{
    BlockParam, HelperTemplate, Parameter, Subexpression, Template, TemplateElement,
};

use super::load::Part;
use super::{BUILTIN_HELPERS, PACKWELL_HELPERS, TemplateIssue, limits};
use crate::suggest::{Likeness, closest};
use shape::{EMAIL_ROOT, NOTE_ROOT, Ty};

mod paths;
mod position;
mod shape;

/// Which file of the templates folder a text is, for [`check_template`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// `notes/NAME.hbs`
    Note,
    /// `emails/NAME/subject.hbs`
    Subject,
    /// `emails/NAME/html.hbs`
    Html,
    /// `emails/NAME/text.hbs`
    Text,
}

/// Checks one template's text as `packwell validate` does (limits, syntax, the names it reads
/// and calls), reporting against `file`. Any text is safe to pass: this never panics and never
/// recurses deeper than the limits allow.
pub fn check_template(file: &Path, source: &str, kind: TemplateKind) -> Vec<TemplateIssue> {
    let part = match kind {
        TemplateKind::Note => Part::Note,
        TemplateKind::Subject => Part::Subject,
        TemplateKind::Html => Part::Html,
        TemplateKind::Text => Part::Text,
    };
    check_source(file, source, "check", part).1
}

/// Parses one template and checks it; the template is returned even with issues so that a
/// caller can tell "did not parse" (None) from "parsed, but names unknown things".
pub(super) fn check_source(
    file: &Path,
    source: &str,
    key: &str,
    part: Part,
) -> (Option<Template>, Vec<TemplateIssue>) {
    // Before the parser, which recurses once per nesting level (see `limits`).
    if let Some(v) = limits::check_template_limits(source) {
        let (line, col) = line_col(source, v.offset);
        let issue = TemplateIssue {
            file: file.to_path_buf(),
            line,
            col,
            message: v.message,
        };
        return (None, vec![issue]);
    }
    // The handlebars parser has internal unwraps; a template that trips one must become an
    // issue for the marketer, not a crashed `validate` or service.
    let compiled = std::panic::catch_unwind(|| Template::compile_with_name(source, key.to_owned()));
    let template = match compiled {
        Ok(Ok(template)) => template,
        Ok(Err(e)) => {
            let (mut line, mut col) = e.pos().unwrap_or((1, 1));
            let mut reason = parse_reason(&e, source);
            // Handlebars reports an unclosed block at the end of the file; point at the block
            // that was opened instead, which is where the marketer has to look.
            if reason.starts_with("a block is not closed")
                && let Some((name, at)) = unclosed_block(source)
            {
                (line, col) = line_col(source, at);
                reason = format!("{{{{#{name}}}}} is not closed: add {{{{/{name}}}}}");
            }
            let issue = TemplateIssue {
                file: file.to_path_buf(),
                line,
                col,
                message: format!("template does not parse: {reason}"),
            };
            return (None, vec![issue]);
        }
        Err(_) => {
            let issue = TemplateIssue {
                file: file.to_path_buf(),
                line: 1,
                col: 1,
                message: "template does not parse (the parser failed on it)".to_owned(),
            };
            return (None, vec![issue]);
        }
    };
    let mut checker = Checker::new(file, source, part);
    checker.template(&template, Pos { line: 1, col: 1 });
    (Some(template), checker.issues)
}

/// The innermost block opened (`{{#name`) and never closed, with its byte offset.
fn unclosed_block(source: &str) -> Option<(String, usize)> {
    let tags = regex::Regex::new(r"\{\{~?\s*([#/])\s*([A-Za-z_][\w.-]*)").ok()?;
    let mut open: Vec<(String, usize)> = Vec::new();
    for cap in tags.captures_iter(source) {
        let (Some(whole), Some(kind), Some(name)) = (cap.get(0), cap.get(1), cap.get(2)) else {
            continue;
        };
        if kind.as_str() == "#" {
            open.push((name.as_str().to_owned(), whole.start()));
        } else if open.last().is_some_and(|(n, _)| n == name.as_str()) {
            open.pop();
        }
    }
    open.pop()
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn parse_reason(e: &handlebars::TemplateError, source: &str) -> String {
    let handlebars::TemplateErrorReason::InvalidSyntax(text) = e.reason() else {
        return e.reason().to_string();
    };
    // pest names grammar rules ("expected helper_block_end, ..."); say what they mean.
    let at_end = e.pos().is_some_and(|(line, col)| {
        let last_line = source.lines().count().max(1);
        line > last_line
            || (line == last_line && col > source.lines().last().map_or(0, |l| l.chars().count()))
    });
    if text.contains("helper_block_end") && at_end {
        "a block is not closed: every {{#name ...}} needs its {{/name}}".to_owned()
    } else if text.contains("trailing_tilde_to_omit_whitespace") {
        "the tag is not closed: expected }}".to_owned()
    } else if text.contains("path_inline") || text.contains("identifier") {
        "expected a variable or helper name inside {{ }}".to_owned()
    } else {
        // Keep pest's last line ("expected ..."), not its copy of the source.
        let last = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("invalid syntax");
        format!(
            "invalid handlebars syntax: {}",
            last.trim_start_matches("= ")
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The syntax-tree walk

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    line: usize,
    col: usize,
}

/// One handlebars block context: only `#each` and `#with` open one (as in handlebars-rust),
/// so `../` inside `#if` climbs the same number of levels as at render time.
struct Scope {
    this: Ty,
    block_params: Vec<(String, Ty)>,
    each: bool,
}

struct Checker<'a> {
    file: &'a Path,
    source: &'a str,
    line_starts: Vec<usize>,
    part: Part,
    root: Ty,
    scopes: Vec<Scope>,
    issues: Vec<TemplateIssue>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a Path, source: &'a str, part: Part) -> Checker<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        let root = if part == Part::Note {
            NOTE_ROOT
        } else {
            EMAIL_ROOT
        };
        Checker {
            file,
            source,
            line_starts,
            part,
            root,
            scopes: vec![Scope {
                this: root,
                block_params: Vec::new(),
                each: false,
            }],
            issues: Vec::new(),
        }
    }

    fn report(&mut self, pos: Pos, message: String) {
        self.issues.push(TemplateIssue {
            file: self.file.to_path_buf(),
            line: pos.line,
            col: pos.col,
            message,
        });
    }

    fn template(&mut self, template: &Template, fallback: Pos) {
        for (i, element) in template.elements.iter().enumerate() {
            // `{{else if}}` chains are stored as templates without a mapping: they take the
            // position the caller found for their `{{else` tag.
            let pos = template.mapping.get(i).map_or(fallback, |m| Pos {
                line: m.0,
                col: m.1,
            });
            self.element(element, pos);
        }
    }

    fn element(&mut self, element: &TemplateElement, pos: Pos) {
        match element {
            TemplateElement::Expression(ht) => {
                self.expression(ht, pos);
            }
            TemplateElement::HtmlExpression(ht) => {
                if self.part == Part::Html {
                    self.report(
                        pos,
                        "{{{ }}} turns HTML escaping off; write {{ }} so every value is escaped"
                            .to_owned(),
                    );
                }
                self.expression(ht, pos);
            }
            TemplateElement::HelperBlock(ht) => self.block(ht, pos),
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => self
                .report(
                    pos,
                    "partials ({{> ...}}) are not supported: each template stands alone".to_owned(),
                ),
            TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                self.report(pos, "decorators ({{* ...}}) are not supported".to_owned())
            }
            _ => {}
        }
    }

    /// `{{name}}`, `{{helper args}}` or a subexpression; returns the type of its value.
    fn expression(&mut self, ht: &HelperTemplate, pos: Pos) -> Ty {
        let name_only = !ht.block && ht.params.is_empty() && ht.hash.is_empty();
        match &ht.name {
            Parameter::Path(path) if name_only => {
                let raw = path_raw(path);
                // Handlebars calls a registered helper before it looks a bare name up.
                if is_helper(raw) {
                    self.helper_call(raw, ht, pos);
                    Ty::Any
                } else {
                    self.path(path, pos)
                }
            }
            Parameter::Subexpression(sub) => self.subexpression(sub, pos),
            Parameter::Literal(_) => Ty::Any,
            name => {
                let name = name.as_name().unwrap_or_default().to_owned();
                self.helper_call(&name, ht, pos);
                Ty::Any
            }
        }
    }

    fn subexpression(&mut self, sub: &Subexpression, pos: Pos) -> Ty {
        match sub.as_element() {
            TemplateElement::Expression(ht) => self.expression(ht, pos),
            _ => Ty::Any,
        }
    }

    fn helper_call(&mut self, name: &str, ht: &HelperTemplate, pos: Pos) {
        let name_pos = self.token_pos(pos, name);
        if !is_helper(name) {
            let known = BUILTIN_HELPERS.iter().chain(PACKWELL_HELPERS).copied();
            let message = match closest(name, known, Likeness::FewEdits) {
                Some(guess) => format!("unknown helper \"{name}\", did you mean \"{guess}\"?"),
                None => format!("unknown helper \"{name}\""),
            };
            self.report(name_pos, message);
        } else if let Some(expected) = arity(name)
            && ht.params.len() != expected.0
        {
            self.report(
                name_pos,
                format!(
                    "helper \"{name}\" takes {}, found {} argument(s)",
                    expected.1,
                    ht.params.len()
                ),
            );
        }
        self.arguments(ht, pos);
    }

    fn arguments(&mut self, ht: &HelperTemplate, pos: Pos) {
        for param in &ht.params {
            self.parameter(param, pos);
        }
        let mut hash: Vec<_> = ht.hash.iter().collect();
        hash.sort_by(|a, b| a.0.cmp(b.0));
        for (_, value) in hash {
            self.parameter(value, pos);
        }
    }

    fn parameter(&mut self, param: &Parameter, pos: Pos) -> Ty {
        match param {
            Parameter::Path(path) => self.path(path, pos),
            Parameter::Subexpression(sub) => self.subexpression(sub, pos),
            _ => Ty::Any,
        }
    }

    fn block(&mut self, ht: &HelperTemplate, pos: Pos) {
        let name = ht.name.as_name().unwrap_or_default().to_owned();
        match name.as_str() {
            "each" | "with" => {
                let name_pos = self.token_pos(pos, &name);
                if ht.params.len() != 1 {
                    self.report(
                        name_pos,
                        format!("#{name} takes one argument, found {}", ht.params.len()),
                    );
                }
                let ty = ht
                    .params
                    .first()
                    .map_or(Ty::Any, |p| self.parameter(p, pos));
                let mut hash: Vec<_> = ht.hash.iter().collect();
                hash.sort_by(|a, b| a.0.cmp(b.0));
                for (_, value) in hash {
                    self.parameter(value, pos);
                }
                let scope = if name == "each" {
                    self.each_scope(ty, ht, pos)
                } else {
                    Scope {
                        this: ty,
                        block_params: block_param_names(ht.block_param.as_ref())
                            .into_iter()
                            .take(1)
                            .map(|n| (n, ty))
                            .collect(),
                        each: false,
                    }
                };
                self.scopes.push(scope);
                if let Some(body) = &ht.template {
                    self.template(body, pos);
                }
                self.scopes.pop();
                // `{{else}}` of #each / #with renders in the outer context.
                if let Some(inverse) = &ht.inverse {
                    self.inverse(inverse, pos);
                }
            }
            // The body of {{{{raw}}}} is text, not template syntax.
            "raw" => self.arguments(ht, pos),
            _ => {
                self.helper_call(&name, ht, pos);
                if matches!(name.as_str(), "if" | "unless") && ht.params.len() != 1 {
                    let name_pos = self.token_pos(pos, &name);
                    self.report(
                        name_pos,
                        format!("#{name} takes one argument, found {}", ht.params.len()),
                    );
                }
                if let Some(body) = &ht.template {
                    self.template(body, pos);
                }
                if let Some(inverse) = &ht.inverse {
                    self.inverse(inverse, pos);
                }
            }
        }
    }

    /// The `{{else}}` part of a block. An `{{else if ...}}` chain has no positions of its own,
    /// so its elements are placed at the block's next `{{else` tag.
    fn inverse(&mut self, inverse: &Template, block_pos: Pos) {
        let at = self.next_else_tag(block_pos).unwrap_or(block_pos);
        self.template(inverse, at);
    }

    fn each_scope(&mut self, ty: Ty, ht: &HelperTemplate, pos: Pos) -> Scope {
        let (item, key) = match ty {
            Ty::List(item) => (*item, Ty::Scalar),
            // An object's values differ in shape; what they are is not known here.
            Ty::Object(_) | Ty::Any => (Ty::Any, Ty::Scalar),
            Ty::Scalar => {
                let what = ht
                    .params
                    .first()
                    .and_then(|p| match p {
                        Parameter::Path(path) => Some(path_raw(path).to_owned()),
                        _ => None,
                    })
                    .unwrap_or_else(|| "its argument".to_owned());
                let at = self.token_pos(pos, &what);
                self.report(at, format!("#each needs a list, but {what} is not one"));
                (Ty::Any, Ty::Scalar)
            }
        };
        let names = block_param_names(ht.block_param.as_ref());
        Scope {
            this: item,
            block_params: names.into_iter().zip([item, key]).collect(),
            each: true,
        }
    }
}

pub(super) fn is_helper(name: &str) -> bool {
    BUILTIN_HELPERS.contains(&name) || PACKWELL_HELPERS.contains(&name)
}

/// Argument counts that are known ahead, with how to say them.
fn arity(name: &str) -> Option<(usize, &'static str)> {
    match name {
        "money" => Some((2, "2 arguments (amount currency)")),
        "date" => Some((1, "1 argument (a date)")),
        _ => None,
    }
}

fn path_raw(path: &handlebars::Path) -> &str {
    match path {
        handlebars::Path::Relative((_, raw)) | handlebars::Path::Local((_, _, raw)) => raw,
    }
}

fn block_param_names(param: Option<&BlockParam>) -> Vec<String> {
    let name = |p: &Parameter| p.as_name().map(str::to_owned);
    match param {
        Some(BlockParam::Single(p)) => name(p).into_iter().collect(),
        Some(BlockParam::Pair((a, b))) => name(a).into_iter().chain(name(b)).collect(),
        _ => Vec::new(),
    }
}
