//! Depth and size limits on templates, checked by one flat pass over the text before the
//! handlebars parser sees it.
//!
//! handlebars parses with pest, by recursion: every `{{#block}}` inside another, every
//! `(subexpression)` and every `[array]` or `{object}` literal inside another costs stack frames,
//! and the parsed tree is walked by recursion again (our checker, rendering, dropping it); an
//! `{{else if}}` nests the rest of its block one level deeper in that tree. 20 000 nested
//! `{{#if}}` overflowed the stack and aborted the process. This pass follows the grammar's
//! tokens (text, `\{{` escapes, comments, raw blocks, strings, path keys such as `[my key]`)
//! closely enough that it never counts less nesting than the parser would recurse into, and
//! stops at the first tag nested deeper than the limit.
//!
//! The limits are far beyond a marketer's template: the examples nest 3 levels at most.

pub use super::load::note_from_text;

/// Where a text first goes beyond a limit (a byte offset into it) and what the limit is. The
/// rule limits report theirs with it too ([`crate::rules::limits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub offset: usize,
    pub message: String,
}

/// Blocks (`{{#if}}`, `{{#each}}`, an `{{else if}}` chain), subexpressions and literals open
/// inside each other.
pub const MAX_TEMPLATE_DEPTH: usize = 32;
/// Bytes of one template file: a long e-mail with inline styles is about 40 KiB.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

/// The first limit a template goes beyond, or `None` when it is within both.
pub fn check_template_limits(source: &str) -> Option<Violation> {
    template_depth(source).err()
}

/// The deepest nesting of a template's blocks, subexpressions and literals, or where it first
/// goes beyond a limit (a byte offset). Of a text larger than the limit, the first 256 KiB are
/// scanned all the same, so that nesting found there is reported where it is.
pub fn template_depth(source: &str) -> Result<usize, Violation> {
    let mut end = source.len().min(MAX_TEMPLATE_BYTES);
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = Scan {
        b: &source.as_bytes()[..end],
        blocks: Vec::new(),
        depth: 0,
        max: 0,
    };
    s.text(0)?;
    if end < source.len() {
        return Err(too_large());
    }
    Ok(s.max)
}

pub(super) fn too_large() -> Violation {
    Violation {
        offset: 0,
        message: format!(
            "the template is larger than {} KiB (limit {} KiB)",
            MAX_TEMPLATE_BYTES / 1024,
            MAX_TEMPLATE_BYTES / 1024
        ),
    }
}

/// The grammar's implicit whitespace between tokens.
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The grammar's `symbol_char` (ASCII part; every non-ASCII character is one too).
fn is_symbol(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'$' | b':') || c >= 0x80
}

/// Why the scan stopped early.
enum Stop {
    /// The scan cannot follow the text from here (handlebars refuses it too, as far as the
    /// scan knows): reported as an error, never passed as measured.
    Rejected,
    Limit(Violation),
}

impl From<Violation> for Stop {
    fn from(v: Violation) -> Stop {
        Stop::Limit(v)
    }
}

struct Scan<'a> {
    b: &'a [u8],
    /// Per open block, the `{{else if}}` chains it holds so far.
    blocks: Vec<usize>,
    /// Open blocks and their chains, the nesting the tree has at this point of the text.
    depth: usize,
    max: usize,
}

impl Scan<'_> {
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    fn starts(&self, i: usize, s: &[u8]) -> bool {
        self.b.get(i..).is_some_and(|rest| rest.starts_with(s))
    }

    fn find(&self, from: usize, s: &[u8]) -> Option<usize> {
        let rest = self.b.get(from..)?;
        rest.windows(s.len()).position(|w| w == s).map(|p| from + p)
    }

    fn skip_ws(&self, mut i: usize) -> usize {
        while is_ws(self.at(i)) {
            i += 1;
        }
        i
    }

    /// Records a nesting of `depth` reached by something starting at `offset`.
    fn reach(&mut self, depth: usize, offset: usize) -> Result<(), Violation> {
        self.max = self.max.max(depth);
        if depth > MAX_TEMPLATE_DEPTH {
            return Err(Violation {
                offset,
                message: format!(
                    "nested more than {MAX_TEMPLATE_DEPTH} levels deep (limit {MAX_TEMPLATE_DEPTH})"
                ),
            });
        }
        Ok(())
    }

    /// `{{` at `p` preceded by exactly one backslash is text (the grammar's `escape`); two or
    /// more backslashes are text themselves and the tag is real.
    fn escaped(&self, text_start: usize, p: usize) -> bool {
        p > text_start && self.b[p - 1] == b'\\' && !(p - 1 > text_start && self.b[p - 2] == b'\\')
    }

    /// Text from `i` to the end, tag after tag.
    fn text(&mut self, mut i: usize) -> Result<(), Violation> {
        let mut text_start = i;
        while let Some(p) = self.find(i, b"{{") {
            if self.escaped(text_start, p) {
                // `\{{` and `\{{{{` are text.
                i = p + 2;
                if self.starts(i, b"{{") {
                    i += 2;
                }
                continue;
            }
            let next = if self.starts(p, b"{{{{") {
                self.raw_block(p)
            } else if self.starts(p, b"{{!") {
                self.comment(p)
            } else {
                self.tag(p)
            };
            match next {
                Ok(end) => {
                    i = end;
                    text_start = end;
                }
                // Where the scan cannot follow, the rest is passed to handlebars (to report its
                // own error) only when it cannot nest past the limit however it is read: every
                // level (block, subexpression, literal) opens with a `{`, `(` or `[` of its own,
                // so their count bounds the depth. Should
                // handlebars read the rest differently (a quoting rule this scan does not know),
                // nothing deep slips through unmeasured.
                Err(Stop::Rejected) => {
                    let rest = &self.b[p..];
                    let openers = rest
                        .iter()
                        .filter(|c| matches!(**c, b'{' | b'(' | b'['))
                        .count();
                    if self.depth.saturating_add(openers) <= MAX_TEMPLATE_DEPTH {
                        return Ok(());
                    }
                    return Err(Violation {
                        offset: p,
                        message: "this tag cannot be read (it does not close, or a string or bracket in it does not end)".to_owned(),
                    });
                }
                Err(Stop::Limit(v)) => return Err(v),
            }
        }
        Ok(())
    }

    /// `{{{{name}}}} raw text {{{{/name}}}}`: nothing inside is parsed; the block is one level
    /// in the tree.
    fn raw_block(&mut self, p: usize) -> Result<usize, Stop> {
        self.reach(self.depth + 1, p)?;
        let start_end = self.find(p + 4, b"}}}}").ok_or(Stop::Rejected)? + 4;
        let mut i = start_end;
        let mut text_start = start_end;
        loop {
            let q = self.find(i, b"{{{{").ok_or(Stop::Rejected)?;
            if self.escaped(text_start, q) {
                i = q + 4;
                text_start = i;
                continue;
            }
            return Ok(self.find(q + 4, b"}}}}").ok_or(Stop::Rejected)? + 4);
        }
    }

    /// `{{!-- ... --}}` up to the first `--}}`, else `{{! ... }}` up to the first `}}`.
    fn comment(&self, p: usize) -> Result<usize, Stop> {
        if self.starts(p, b"{{!--")
            && let Some(q) = self.find(p + 5, b"--}}")
        {
            return Ok(q + 4);
        }
        Ok(self.find(p + 3, b"}}").ok_or(Stop::Rejected)? + 2)
    }

    /// One tag starting at `p` (`{{`): opens, continues or closes a block, then its name and
    /// parameters up to the closing `}}`; returns the offset after it.
    fn tag(&mut self, p: usize) -> Result<usize, Stop> {
        let mut i = self.skip_ws(p + 2);
        if self.at(i) == b'~' {
            i = self.skip_ws(i + 1);
        }
        let mut triple = false;
        match self.at(i) {
            b'#' => {
                self.blocks.push(0);
                self.depth += 1;
                self.reach(self.depth, p)?;
                // `{{#> partial}}` and `{{#*inline}}` are blocks too.
                i = self.skip_ws(i + 1);
                if matches!(self.at(i), b'>' | b'*') {
                    i += 1;
                }
            }
            b'/' => {
                if let Some(chains) = self.blocks.pop() {
                    self.depth -= 1 + chains;
                }
                i += 1;
            }
            b'^' | b'e' if self.at(i) == b'^' || self.starts(i, b"else") => {
                i += if self.at(i) == b'^' { 1 } else { 4 };
                // `{{else}}` and `{{^}}` switch to the inverse; `{{else if x}}` (anything but
                // `}}` or `~` after it) nests the rest of the block one level deeper.
                let j = self.skip_ws(i);
                let plain = self.at(j) == b'~' || self.starts(j, b"}}");
                if !plain && let Some(chains) = self.blocks.last_mut() {
                    *chains += 1;
                    self.depth += 1;
                    self.reach(self.depth, p)?;
                }
            }
            b'{' => {
                triple = true;
                i += 1;
            }
            b'>' | b'*' | b'&' => i += 1,
            _ => {}
        }
        self.parameters(i, triple)
    }

    /// A tag's name and parameters from `i`, to the end of the tag.
    fn parameters(&mut self, mut i: usize, mut triple: bool) -> Result<usize, Stop> {
        let mut parens = 0usize;
        // The first token of a tag or subexpression is a name or path, never a literal.
        let mut first = true;
        loop {
            if i >= self.b.len() {
                return Err(Stop::Rejected);
            }
            let c = self.b[i];
            match c {
                c if is_ws(c) || c == b'~' => i += 1,
                b'}' if parens == 0 => {
                    if triple {
                        triple = false;
                        i += 1;
                    } else if self.starts(i, b"}}") {
                        return Ok(i + 2);
                    } else {
                        return Err(Stop::Rejected);
                    }
                }
                b'(' => {
                    parens += 1;
                    self.reach(self.depth + parens, i)?;
                    first = true;
                    i += 1;
                }
                b')' => {
                    parens = parens.checked_sub(1).ok_or(Stop::Rejected)?;
                    first = false;
                    i += 1;
                }
                b'"' | b'\'' => {
                    i = self.string(i).ok_or(Stop::Rejected)?;
                    first = false;
                }
                b'[' if first => {
                    i = self.path(i)?;
                    first = false;
                }
                // A parameter is a literal if it parses as one, else a path (`[key]`).
                b'[' | b'{' => {
                    i = match self.literal(i, self.depth + parens)? {
                        Some(end) => end,
                        None if c == b'[' => self.path(i)?,
                        None => return Err(Stop::Rejected),
                    };
                    first = false;
                }
                b']' | b'}' => return Err(Stop::Rejected),
                b'=' | b'|' => i += 1,
                _ => {
                    i = match self.scalar(i) {
                        Some(end) if !first => end,
                        _ => self.path(i)?,
                    };
                    first = false;
                }
            }
        }
    }

    /// A path (`customer.first_name`, `../x`, `@root`, `items.[0]`, `[my key].x`) from `i`;
    /// returns the offset after it (at least one character on).
    fn path(&self, i: usize) -> Result<usize, Stop> {
        let mut j = i;
        loop {
            let c = self.at(j);
            if c == b'[' && (j == i || matches!(self.b[j - 1], b'.' | b'/' | b'@')) {
                // A path key: anything up to the first `]`.
                j = self.find(j + 1, b"]").ok_or(Stop::Rejected)? + 1;
            } else if j < self.b.len() && (is_symbol(c) || matches!(c, b'.' | b'/' | b'@')) {
                j += 1;
            } else {
                break;
            }
        }
        Ok(j.max(i + 1))
    }

    /// A quoted string with backslash escapes; the offset after it, `None` if unterminated.
    fn string(&self, i: usize) -> Option<usize> {
        let quote = self.b[i];
        let mut j = i + 1;
        while j < self.b.len() {
            match self.b[j] {
                b'\\' => j += 2,
                c if c == quote => return Some(j + 1),
                _ => j += 1,
            }
        }
        None
    }

    /// The literal (`[...]` or `{...}`) at `i`, parsed as the grammar's `literal` does, without
    /// recursion: `Some(end)` when it is one, `None` when the grammar would not take it as a
    /// literal. Nesting beyond the limit anywhere in the attempt counts, even if the attempt
    /// then fails: the parser recursed that deep too.
    fn literal(&mut self, i: usize, outer: usize) -> Result<Option<usize>, Stop> {
        #[derive(Clone, Copy, PartialEq)]
        enum Want {
            /// After `[`: a value, `,` or `]`; after `{`: a key, `,` or `}`.
            Open,
            /// After a value: `,` or the closing bracket.
            CommaOrClose,
            /// After `,`: a value in an array, a key in an object.
            Item,
            /// After a key: `:`.
            Colon,
            /// After `:`: a value.
            Value,
        }
        // The open literals: whether each is an object, and what it wants next.
        let mut stack: Vec<(bool, Want)> = vec![(self.at(i) == b'{', Want::Open)];
        self.reach(outer + 1, i)?;
        let mut j = i + 1;
        loop {
            j = self.skip_ws(j);
            let Some(&(object, want)) = stack.last() else {
                return Ok(Some(j));
            };
            let c = self.at(j);
            let close = if object { b'}' } else { b']' };
            let then = |stack: &mut Vec<(bool, Want)>, w: Want| {
                if let Some(top) = stack.last_mut() {
                    top.1 = w;
                }
            };
            match want {
                Want::Open | Want::CommaOrClose if c == close => {
                    stack.pop();
                    then(&mut stack, Want::CommaOrClose);
                    j += 1;
                }
                Want::Open | Want::CommaOrClose if c == b',' => {
                    then(&mut stack, Want::Item);
                    j += 1;
                }
                Want::Colon if c == b':' => {
                    then(&mut stack, Want::Value);
                    j += 1;
                }
                // A key: a string.
                Want::Open | Want::Item if object => {
                    let Some(end) = (c == b'"' || c == b'\'').then(|| self.string(j)).flatten()
                    else {
                        return Ok(None);
                    };
                    then(&mut stack, Want::Colon);
                    j = end;
                }
                Want::Open | Want::Item | Want::Value => {
                    then(&mut stack, Want::CommaOrClose);
                    j = match c {
                        b'[' | b'{' => {
                            stack.push((c == b'{', Want::Open));
                            self.reach(outer + stack.len(), j)?;
                            j + 1
                        }
                        b'"' | b'\'' => match self.string(j) {
                            Some(end) => end,
                            None => return Ok(None),
                        },
                        _ => match self.scalar(j) {
                            Some(end) => end,
                            None => return Ok(None),
                        },
                    };
                }
                _ => return Ok(None),
            }
        }
    }

    /// A number, `null`, `true` or `false` at `i`, not followed by a symbol character.
    fn scalar(&self, i: usize) -> Option<usize> {
        let mut j = i;
        for word in [&b"null"[..], b"true", b"false"] {
            if self.starts(i, word) {
                j = i + word.len();
            }
        }
        if j == i {
            // "-"? DIGIT+ "."? DIGIT* ("E" "-"? DIGIT+)?
            let digits = |mut k: usize| {
                while self.at(k).is_ascii_digit() {
                    k += 1;
                }
                k
            };
            if self.at(j) == b'-' {
                j += 1;
            }
            let after = digits(j);
            if after == j {
                return None;
            }
            j = after;
            if self.at(j) == b'.' {
                j = digits(j + 1);
            }
            if self.at(j) == b'E' {
                let k = if self.at(j + 1) == b'-' { j + 2 } else { j + 1 };
                let e = digits(k);
                if e > k {
                    j = e;
                }
            }
        }
        (!is_symbol(self.at(j))).then_some(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(s: &str) -> usize {
        template_depth(s).expect("within the limits")
    }

    fn nested_ifs(n: usize) -> String {
        format!("{}x{}", "{{#if a}}".repeat(n), "{{/if}}".repeat(n))
    }

    #[test]
    fn blocks_chains_subexpressions_and_literals_nest() {
        assert_eq!(depth("Hello {{customer.first_name}}!"), 0);
        assert_eq!(depth(&nested_ifs(3)), 3);
        assert_eq!(
            depth("{{#if a}}{{else if b}}{{else if c}}x{{else}}y{{/if}}"),
            3
        );
        assert_eq!(depth("{{#if a}}{{else}}{{/if}}{{#if b}}{{/if}}"), 1);
        assert_eq!(depth("{{f (g (h x))}}"), 2);
        assert_eq!(depth("{{#if a}}{{f (g x)}}{{/if}}"), 2);
        assert_eq!(depth(r#"{{f [1, [2, {"k": [3]}]] y=[[]]}}"#), 4);
        assert_eq!(depth("{{{f (g x)}}}"), 1);
    }

    #[test]
    fn what_the_parser_does_not_parse_does_not_nest() {
        // Strings, path keys, comments, raw blocks and escaped tags hold no tags.
        assert_eq!(depth(r#"{{f "{{#if a}}(((" '{{/if}}'}}"#), 0);
        assert_eq!(depth(r#"{{lookup this.[{{#if "(]}}"#), 0);
        // A parameter that starts like a literal and is not one is a path key; the attempt
        // counts the nesting the parser tried.
        assert_eq!(depth(r#"{{lookup this [{ {{#if "(]}}"#), 2);
        assert_eq!(depth("{{!-- {{#if a}} --}}{{! {{#if b}} }}"), 0);
        // A raw block is one level; what it holds is not parsed.
        assert_eq!(depth("{{{{raw}}}} {{#if a}}{{#if a}} {{{{/raw}}}}"), 1);
        assert_eq!(depth(r"\{{#if a}}"), 0);
        // Two backslashes are text themselves: the tag is real.
        assert_eq!(depth(r"\\{{#if a}}{{/if}}"), 1);
    }

    #[test]
    fn a_closing_tag_in_a_string_does_not_close_the_block() {
        let hidden = "{{#if a}}{{f \"}}{{/if}}\"}}".repeat(40);
        let v = template_depth(&hidden).expect_err("40 open blocks");
        assert!(v.message.contains("(limit 32)"), "{}", v.message);
    }

    #[test]
    fn the_first_block_past_the_limit_is_reported() {
        let text = nested_ifs(20_000);
        let v = template_depth(&text).expect_err("too deep");
        assert_eq!(v.offset, 32 * "{{#if a}}".len());
        assert_eq!(v.message, "nested more than 32 levels deep (limit 32)");
        assert_eq!(depth(&nested_ifs(32)), 32);
        let chains = format!("{{{{#if a}}}}{}{{{{/if}}}}", "{{else if b}}".repeat(32));
        let v = template_depth(&chains).expect_err("too deep");
        assert_eq!(v.offset, 9 + 31 * "{{else if b}}".len());
    }

    #[test]
    fn a_template_over_the_size_limit_is_refused() {
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        let v = template_depth(&big).expect_err("too large");
        assert!(v.message.contains("(limit 256 KiB)"), "{}", v.message);
        assert_eq!(depth(&big[1..]), 0);
        // Nesting within the first 256 KiB is reported where it is.
        let deep = format!("{}{}", nested_ifs(40), big);
        assert!(
            template_depth(&deep)
                .expect_err("deep")
                .message
                .contains("levels")
        );
    }
}
