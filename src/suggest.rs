//! "Did you mean ...?": the known name closest to a misspelt one, for every message that
//! names something unknown (rule keys, variables, ids, templates, helpers, inserts).
//!
//! Two likenesses are kept because the messages marketers already see depend on them: rule
//! files and the command line judge names by how alike they read from the start (Jaro-Winkler),
//! templates by how few letters must change (Damerau-Levenshtein). Either one alone would
//! change which names get a suggestion.

/// How a misspelt name is compared with the known ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Likeness {
    /// Jaro-Winkler similarity above 0.8: rewards a shared beginning, so `whn` finds `when`
    /// and `coupon-11` finds `coupon-10`. Used for rule files, ids and the command line.
    SharedStart,
    /// Damerau-Levenshtein distance of at most a third of the longer name (and at least 1):
    /// swapped, missing or extra letters. Used for the names a template reads and calls.
    FewEdits,
}

/// The known name most like `name` by `likeness`, when it is close enough to be a likely typo.
/// `name` itself, if known, is never suggested under [`Likeness::FewEdits`].
pub fn closest<'k>(
    name: &str,
    known: impl Iterator<Item = &'k str>,
    likeness: Likeness,
) -> Option<&'k str> {
    match likeness {
        Likeness::SharedStart => known
            .map(|k| (strsim::jaro_winkler(name, k), k))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| k),
        Likeness::FewEdits => known
            .map(|k| (strsim::damerau_levenshtein(name, k), k))
            .filter(|(d, k)| {
                *d > 0 && *d <= (name.chars().count().max(k.chars().count()) / 3).max(1)
            })
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_start_is_enough_for_rule_names() {
        let keys = ["when", "description", "id"].into_iter();
        assert_eq!(closest("whn", keys, Likeness::SharedStart), Some("when"));
        let ids = ["coupon-10", "tea-sachet"].into_iter();
        assert_eq!(
            closest("coupon-11", ids, Likeness::SharedStart),
            Some("coupon-10")
        );
        assert_eq!(
            closest("zzz", ["when"].into_iter(), Likeness::SharedStart),
            None
        );
    }

    #[test]
    fn few_edits_find_template_names_but_not_the_name_itself() {
        let helpers = ["money", "date", "each"].into_iter();
        assert_eq!(closest("monee", helpers, Likeness::FewEdits), Some("money"));
        assert_eq!(
            closest("nmae", ["name"].into_iter(), Likeness::FewEdits),
            Some("name")
        );
        assert_eq!(
            closest("name", ["name"].into_iter(), Likeness::FewEdits),
            None
        );
        assert_eq!(
            closest("total", ["name"].into_iter(), Likeness::FewEdits),
            None
        );
    }
}
