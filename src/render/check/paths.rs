//! Resolving a variable path a template reads (`customer.first_name`, `../order`, `@root.x`,
//! a block parameter) against the data's shape, and saying what is wrong with one that does
//! not resolve, with the closest name as the marketer would write it.

use handlebars::PathSeg;

use super::shape::{EMAIL_ONLY, Ty};
use super::{Checker, Pos};
use crate::suggest::{Likeness, closest};

impl Checker<'_> {
    pub(super) fn path(&mut self, path: &handlebars::Path, pos: Pos) -> Ty {
        match path {
            handlebars::Path::Local((level, name, raw)) => {
                let at = self.token_pos(pos, raw);
                match name.as_str() {
                    "root" if *level == 0 => self.root,
                    "index" | "first" | "last" | "key" => {
                        let in_each = self
                            .scopes
                            .len()
                            .checked_sub(1 + level)
                            .and_then(|i| self.scopes.get(i))
                            .is_some_and(|s| s.each);
                        if !in_each {
                            self.report(
                                at,
                                format!("@{name} is only defined inside {{{{#each}}}}"),
                            );
                        }
                        Ty::Scalar
                    }
                    _ => {
                        self.report(at, format!("unknown variable {raw}"));
                        Ty::Any
                    }
                }
            }
            handlebars::Path::Relative((segs, raw)) => self.relative_path(segs, raw, pos),
        }
    }

    pub(super) fn relative_path(&mut self, segs: &[PathSeg], raw: &str, pos: Pos) -> Ty {
        let at = self.token_pos(pos, raw);
        let mut ups = 0usize;
        let mut from_root = false;
        let mut names: Vec<&str> = Vec::new();
        for seg in segs {
            match seg {
                PathSeg::Named(name) => names.push(name),
                // handlebars does not export its grammar's rule type, only its Debug name.
                PathSeg::Ruled(rule) if names.is_empty() => match format!("{rule:?}").as_str() {
                    "path_root" => from_root = true,
                    "path_up" => ups += 1,
                    _ => return Ty::Any,
                },
                _ => return Ty::Any,
            }
        }

        let block_param = match names.first() {
            Some(first) if !from_root => self
                .scopes
                .iter()
                .rev()
                .find_map(|s| s.block_params.iter().find(|(n, _)| n == first))
                .map(|(_, ty)| *ty),
            _ => None,
        };
        let (mut ty, rest) = if let Some(ty) = block_param {
            (ty, &names[1..])
        } else if from_root {
            (self.root, &names[..])
        } else {
            match self.scopes.len().checked_sub(1 + ups) {
                Some(i) => (self.scopes[i].this, &names[..]),
                None => {
                    self.report(
                        at,
                        format!("{raw} climbs above the top of the template with ../"),
                    );
                    return Ty::Any;
                }
            }
        };

        let at_root = block_param.is_none() && matches!(ty, Ty::Object(f) if is_root_fields(f));
        let offsets = segment_offsets(raw, &names);
        let skipped = names.len() - rest.len();
        for (i, name) in rest.iter().enumerate() {
            let index = skipped + i;
            match ty {
                Ty::Any => return Ty::Any,
                Ty::Object(fields) => {
                    if let Some((_, field)) = fields.iter().find(|(f, _)| f == name) {
                        ty = *field;
                        continue;
                    }
                    if at_root && i == 0 && EMAIL_ONLY.contains(name) {
                        self.report(
                            at,
                            format!(
                                "unknown variable {raw}: it is only given to e-mails, not notes"
                            ),
                        );
                        return Ty::Any;
                    }
                    let guess = closest(name, fields.iter().map(|(f, _)| *f), Likeness::FewEdits);
                    let message = match (guess, offsets.get(index)) {
                        (Some(guess), Some(&(start, end))) => format!(
                            "unknown variable {raw}, did you mean {}{guess}{}?",
                            &raw[..start],
                            &raw[end..]
                        ),
                        _ => format!("unknown variable {raw}"),
                    };
                    self.report(at, message);
                    return Ty::Any;
                }
                Ty::List(item) => {
                    if name.parse::<usize>().is_ok() {
                        ty = *item;
                        continue;
                    }
                    let list = value_before(raw, offsets.get(index));
                    self.report(
                        at,
                        format!(
                            "unknown variable {raw}: {list} is a list; go through it with \
                             {{{{#each {list}}}}}"
                        ),
                    );
                    return Ty::Any;
                }
                Ty::Scalar => {
                    let value = value_before(raw, offsets.get(index));
                    self.report(at, format!("unknown variable {raw}: {value} has no fields"));
                    return Ty::Any;
                }
            }
        }
        ty
    }
}

/// The part of a path before a segment, as written; `this` when the segment comes first.
fn value_before<'r>(raw: &'r str, segment: Option<&(usize, usize)>) -> &'r str {
    let before = segment.map_or(raw, |&(start, _)| raw.get(..start).unwrap_or(raw));
    let before = before.trim_end_matches(['.', '/']);
    if before.is_empty() || before == "this" {
        "this"
    } else {
        before
    }
}

fn is_root_fields(fields: &[(&str, Ty)]) -> bool {
    fields.iter().any(|(f, _)| *f == "customer")
}

/// Byte ranges of each named segment inside the path as written, for suggestions that keep
/// the user's own spelling of the rest (`../`, `this.`, `@root.`).
fn segment_offsets(raw: &str, names: &[&str]) -> Vec<(usize, usize)> {
    let mut cursor = 0;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match raw.get(cursor..).and_then(|rest| rest.find(name)) {
            Some(i) => {
                let start = cursor + i;
                cursor = start + name.len();
                out.push((start, cursor));
            }
            None => break,
        }
    }
    out
}
