//! Depth and size limits on rule conditions and rule files, checked by one flat pass over the
//! text before any recursive parser sees it.
//!
//! zen-expression parses and type-checks by recursion: every bracket, every unary operator,
//! every member access and every further term of a chain (`a and b and c ...` becomes a tree as
//! deep as it is long) costs stack frames in the parser, the type checker and the compiler. A
//! condition of 20 000 nested parentheses or 50 000 terms overflowed the stack and aborted the
//! process, so the text is measured first, without recursion, and refused when it is out of
//! bounds.
//!
//! The limits are far beyond what a marketer writes (the example rules stay within 3 levels,
//! 40 tokens and 15 operators), and they keep every recursion of zen-expression within about
//! 1.1 MiB of stack in a debug build: tests/limits.rs runs the worst shapes allowed on a thread
//! of 2 MiB.

/// Brackets (`(`, `[`, `{`, and `${` in a template string) open inside each other.
pub const MAX_EXPR_DEPTH: usize = 64;
/// Terms and operators of one condition: names, numbers, strings, operators, brackets. A list
/// of a thousand postcodes is about 2 000.
pub const MAX_EXPR_TOKENS: usize = 4096;
/// Operators of one condition (`and`, `==`, `.`, `not`, an opening bracket, ...): each can add a
/// level to the parsed tree, about 1 KiB of stack in each recursive pass over it. A list counts
/// once, however long.
pub const MAX_EXPR_OPERATORS: usize = 1024;
/// Bytes of one condition.
pub const MAX_EXPR_BYTES: usize = 16 * 1024;
/// Bytes of one rule file. A folder of a thousand rules is about 300 KiB; one file beyond
/// 1 MiB is generated or a mistake, and reading, hashing and parsing it on every reload would
/// delay every change.
pub const MAX_RULE_FILE_BYTES: u64 = 1024 * 1024;

/// Where a text first goes beyond a limit; the templates' limits report theirs with it too.
pub use crate::render::limits::Violation;

/// What one pass over a condition counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measure {
    /// The deepest nesting of brackets.
    pub depth: usize,
    pub tokens: usize,
    pub operators: usize,
}

/// The first limit a condition goes beyond, or `None` when it is within all of them.
pub fn check_expression(source: &str) -> Option<Violation> {
    measure_expression(source).err()
}

/// Measures a condition the way zen-expression's lexer splits it (strings without escapes,
/// template strings whose `${ ... }` hold expressions), stopping where a limit is first passed.
pub fn measure_expression(source: &str) -> Result<Measure, Violation> {
    // The first 16 KiB are scanned even when the text is longer, so that the limit reported is
    // the one passed first.
    let mut end = source.len().min(MAX_EXPR_BYTES);
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let m = scan(&source[..end])?;
    if end < source.len() {
        return Err(Violation {
            offset: end,
            message: format!(
                "longer than {MAX_EXPR_BYTES} bytes (limit {} KiB): split it into segments",
                MAX_EXPR_BYTES / 1024
            ),
        });
    }
    Ok(m)
}

fn scan(source: &str) -> Result<Measure, Violation> {
    let b = source.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'#');
    let mut m = Measure::default();
    let mut depth = 0usize;
    // Inside a template string: the depth outside of it, and whether we are in `${ ... }`.
    let mut template: Option<(usize, bool)> = None;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let ch = b[i];
        i += 1;
        if let Some((outside, false)) = template {
            // The literal part of a template string.
            if ch == b'`' {
                template = None;
                depth = outside;
            } else if ch == b'$' && b.get(i) == Some(&b'{') {
                i += 1;
                template = Some((outside, true));
                depth += 1;
                count(&mut m, start, depth, true)?;
            }
            continue;
        }
        let operator = match ch {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b'\'' | b'"' => {
                // Strings have no escapes: the next equal quote ends them.
                i = b[i..]
                    .iter()
                    .position(|&c| c == ch)
                    .map_or(b.len(), |p| i + p + 1);
                false
            }
            b'`' => {
                match template {
                    // A backquote inside `${ ... }` ends the whole template string.
                    Some((outside, true)) => {
                        template = None;
                        depth = outside;
                    }
                    _ => template = Some((depth, false)),
                }
                false
            }
            b'}' if matches!(template, Some((_, true))) => {
                depth = depth.saturating_sub(1);
                template = template.map(|(outside, _)| (outside, false));
                false
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                true
            }
            b')' | b']' | b'}' | b',' => {
                depth = depth.saturating_sub(usize::from(ch != b','));
                false
            }
            c if c.is_ascii_digit() => {
                loop {
                    match b.get(i) {
                        Some(c) if c.is_ascii_digit() || matches!(c, b'_' | b'e') => i += 1,
                        // A decimal point, not the `..` of a range.
                        Some(b'.') if b.get(i + 1).is_some_and(u8::is_ascii_digit) => i += 1,
                        _ => break,
                    }
                }
                false
            }
            c if word(&c) => {
                while b.get(i).is_some_and(word) {
                    i += 1;
                }
                matches!(&b[start..i], b"and" | b"or" | b"not" | b"in")
            }
            // Two-character operators are one token.
            b'=' | b'!' | b'<' | b'>' if b.get(i) == Some(&b'=') => {
                i += 1;
                true
            }
            b'.' | b'?' if b.get(i) == Some(&ch) => {
                i += 1;
                true
            }
            c if c.is_ascii() => true,
            // One token per character, also when it takes several bytes.
            _ => {
                while b.get(i).is_some_and(|c| (0x80..0xc0).contains(c)) {
                    i += 1;
                }
                false
            }
        };
        count(&mut m, start, depth, operator)?;
    }
    Ok(m)
}

/// Counts one token that starts at `at`, with the depth it leaves open.
fn count(m: &mut Measure, at: usize, depth: usize, operator: bool) -> Result<(), Violation> {
    m.tokens += 1;
    m.operators += usize::from(operator);
    m.depth = m.depth.max(depth);
    let message = if depth > MAX_EXPR_DEPTH {
        format!("nested more than {MAX_EXPR_DEPTH} levels deep (limit {MAX_EXPR_DEPTH})")
    } else if m.operators > MAX_EXPR_OPERATORS {
        format!(
            "more than {MAX_EXPR_OPERATORS} operators (limit {MAX_EXPR_OPERATORS}): split it into segments"
        )
    } else if m.tokens > MAX_EXPR_TOKENS {
        format!(
            "more than {MAX_EXPR_TOKENS} terms and operators (limit {MAX_EXPR_TOKENS}): split it into segments"
        )
    } else {
        return Ok(());
    };
    Err(Violation {
        offset: at,
        message,
    })
}

/// Reads a rule file, refusing one larger than [`MAX_RULE_FILE_BYTES`] without reading it all.
pub(crate) fn read_rule_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_RULE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_RULE_FILE_BYTES {
        return Err(format!(
            "the file is larger than {} MiB (limit {} MiB): split it into several files",
            MAX_RULE_FILE_BYTES / (1024 * 1024),
            MAX_RULE_FILE_BYTES / (1024 * 1024)
        ));
    }
    String::from_utf8(bytes).map_err(|_| "cannot read: the file is not UTF-8 text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(s: &str) -> usize {
        measure_expression(s).expect("within the limits").depth
    }

    #[test]
    fn brackets_count_outside_strings_only() {
        assert_eq!(depth("customer.orders_count == 1"), 0);
        assert_eq!(depth("some(order.items, #.quantity > (1 + [2][0]))"), 3);
        assert_eq!(depth("'((((' in order.categories"), 0);
        assert_eq!(depth("\"[[[\" == order.id"), 0);
        // A template string's `${ ... }` is an expression one level down.
        assert_eq!(depth("`a ${(order.id)} b (((` == 'x'"), 2);
        // A backquote inside `${` ends the template string, as zen's lexer has it: the
        // brackets after it count from the depth outside the string again.
        assert_eq!(depth("`${ (` == `` and ((((1))))"), 4);
    }

    #[test]
    fn the_first_limit_passed_is_reported_where_it_is_passed() {
        let deep = format!("{}true{}", "(".repeat(65), ")".repeat(65));
        let v = check_expression(&deep).expect("too deep");
        assert_eq!(v.offset, 64);
        assert_eq!(v.message, "nested more than 64 levels deep (limit 64)");
        assert!(check_expression(&deep[1..deep.len() - 1]).is_none());

        let ops = vec!["true"; 1026].join(" and ");
        let v = check_expression(&ops).expect("too many operators");
        assert_eq!(&ops[v.offset..v.offset + 3], "and");
        assert_eq!(ops[..v.offset].matches("and").count(), 1024);
        assert!(v.message.contains("(limit 1024)"), "{}", v.message);

        let list = format!("order.id in [{}]", vec!["'a'"; 2100].join(","));
        let v = check_expression(&list).expect("too many tokens");
        assert!(v.message.contains("(limit 4096)"), "{}", v.message);

        let long = format!("order.id == '{}'", "x".repeat(MAX_EXPR_BYTES));
        let v = check_expression(&long).expect("too long");
        assert_eq!(v.offset, MAX_EXPR_BYTES);
        assert!(v.message.contains("(limit 16 KiB)"), "{}", v.message);
    }

    #[test]
    fn offsets_fall_on_character_boundaries() {
        let text = format!("{}ü{}", "(".repeat(64), "(é".repeat(3));
        let v = check_expression(&text).expect("too deep");
        assert!(text.is_char_boundary(v.offset));
        let long = "é".repeat(MAX_EXPR_BYTES);
        let v = check_expression(&long).expect("too long");
        assert!(long.is_char_boundary(v.offset));
    }

    #[test]
    fn a_rule_file_over_the_size_limit_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.toml");
        std::fs::write(&path, "#".repeat(MAX_RULE_FILE_BYTES as usize + 1)).expect("write");
        let e = read_rule_file(&path).expect_err("too large");
        assert!(e.contains("larger than 1 MiB"), "{e}");
        std::fs::write(&path, "#".repeat(MAX_RULE_FILE_BYTES as usize)).expect("write");
        assert!(read_rule_file(&path).is_ok());
    }
}
