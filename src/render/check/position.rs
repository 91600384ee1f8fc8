//! Positions inside a template's text: the parser keeps one per tag, so the checker finds
//! the argument or the `{{else}}` tag it reports on by reading the text around it.

use super::{Checker, Pos};

impl Checker<'_> {
    /// The first `{{else ...}}` / `{{^}}` tag that belongs to the block whose opening (or
    /// previous else) tag is at `pos`, skipping nested blocks, comments and raw blocks.
    pub(super) fn next_else_tag(&self, pos: Pos) -> Option<Pos> {
        let start = self.offset(pos)?;
        let src = &self.source[start..];
        let mut depth = 0usize;
        let mut i = 0;
        while let Some(found) = src.get(i..)?.find("{{") {
            let tag = i + found;
            let after = &src[tag + 2..];
            let end_of = |pattern: &str, from: usize| {
                src[from..]
                    .find(pattern)
                    .map_or(src.len(), |e| from + e + pattern.len())
            };
            if after.starts_with("{{") {
                // {{{{raw}}}} ... {{{{/raw}}}}: its body is text.
                i = end_of("}}}}", end_of("{{{{/", tag + 4));
                continue;
            }
            let inner = after.trim_start_matches(['{', '~', '&']).trim_start();
            if inner.starts_with("!--") {
                i = end_of("--}}", tag + 2);
                continue;
            }
            i = end_of("}}", tag + 2);
            if tag == 0 {
                depth = 1;
            } else if inner.starts_with('#') {
                depth += 1;
            } else if inner.starts_with('/') {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return None;
                }
            } else if depth == 1 && !inner.starts_with('!') {
                let is_else = inner.starts_with('^')
                    || inner.strip_prefix("else").is_some_and(|rest| {
                        !rest
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    });
                if is_else {
                    return Some(self.pos_of(start + tag));
                }
            }
        }
        None
    }

    /// Where `token` starts inside the tag at `pos`; the tag's own position when it cannot be
    /// found (the parser keeps positions per tag, not per argument).
    pub(super) fn token_pos(&self, pos: Pos, token: &str) -> Pos {
        let Some(start) = self.offset(pos) else {
            return pos;
        };
        let rest = &self.source[start..];
        let tag_end = rest.find("}}").map_or(rest.len(), |i| i + 2);
        let tag = &rest[..tag_end];
        let is_path_char = |c: char| {
            c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | '$' | ':' | '[' | ']')
        };
        let found = tag.match_indices(token).map(|(i, _)| i).find(|&i| {
            let before = tag[..i].chars().next_back();
            let after = tag[i + token.len()..].chars().next();
            !before.is_some_and(is_path_char) && !after.is_some_and(is_path_char)
        });
        match found {
            Some(i) => self.pos_of(start + i),
            None => pos,
        }
    }

    pub(super) fn offset(&self, pos: Pos) -> Option<usize> {
        let line_start = *self.line_starts.get(pos.line.checked_sub(1)?)?;
        let line = &self.source[line_start..];
        let within = line
            .char_indices()
            .nth(pos.col.checked_sub(1)?)
            .map_or(line.len(), |(i, _)| i);
        Some(line_start + within)
    }

    pub(super) fn pos_of(&self, offset: usize) -> Pos {
        let line_index = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let line_start = self.line_starts.get(line_index).copied().unwrap_or(0);
        let col = self
            .source
            .get(line_start..offset)
            .map_or(0, |s| s.chars().count());
        Pos {
            line: line_index + 1,
            col: col + 1,
        }
    }
}
