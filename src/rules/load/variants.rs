//! `variants`: an experiment between inserts (or e-mails) within one rule or follow-up. Ids
//! unique within it, weights positive integers, each variant's `give` checked like a rule's.

use super::inserts::give_list;
use super::*;

/// At most this many variants in one experiment: each needs its own customers to be told apart.
pub(super) const MAX_VARIANTS: usize = 10;
/// The largest weight: weights are shares, and a million parts is finer than any split.
const MAX_WEIGHT: i64 = 1_000_000;

/// A variant as written, whichever table it came from.
pub(super) struct VariantView<'s> {
    pub(super) id: &'s Spanned<String>,
    pub(super) give: &'s [Spanned<String>],
    pub(super) weight: &'s Spanned<i64>,
    pub(super) template: Option<&'s Spanned<String>>,
}

impl<'s> From<&'s model::VariantSpec> for VariantView<'s> {
    fn from(v: &'s model::VariantSpec) -> Self {
        VariantView {
            id: &v.id,
            give: &v.give,
            weight: &v.weight,
            template: None,
        }
    }
}

impl<'s> From<&'s model::FollowupVariantSpec> for VariantView<'s> {
    fn from(v: &'s model::FollowupVariantSpec) -> Self {
        VariantView {
            id: &v.id,
            give: &v.give,
            weight: &v.weight,
            template: v.template.as_ref(),
        }
    }
}

/// Where the experiment is written and what its variants may give.
pub(super) struct Owner<'a> {
    /// `rule "welcome"` or `follow-up "thanks"`, for the messages.
    pub(super) name: &'a str,
    /// The owner's own `id`, where "needs two variants" points.
    pub(super) span: Range<usize>,
    /// The owner's own `give`: with variants, each variant says what it gives instead.
    pub(super) give: &'a [Spanned<String>],
    /// Follow-ups give coupons only, and a variant may give none (with and without a coupon).
    pub(super) followup: bool,
}

/// The variants, checked. Variants with an error are left out (the load fails anyway).
pub(super) fn build_variants(
    src: &Source,
    owner: &Owner<'_>,
    views: &[VariantView<'_>],
    insert_index: &HashMap<String, usize>,
    inserts: &[Insert],
    c: &mut Collector,
) -> Vec<Variant> {
    if views.is_empty() {
        return Vec::new();
    }
    let name = owner.name;
    if let Some(first) = owner.give.first() {
        c.error(
            src,
            &first.span(),
            format!(
                "{name} has both `give` and `variants`: with variants, each variant says what it gives"
            ),
        );
    }
    if views.len() < 2 {
        c.error(
            src,
            &owner.span,
            format!(
                "{name}: `variants` needs at least two variants (one is just `give`; the holdout is the group that gets nothing)"
            ),
        );
    }
    if views.len() > MAX_VARIANTS {
        c.error(
            src,
            &views[MAX_VARIANTS].id.span(),
            format!("{name}: at most {MAX_VARIANTS} variants, each needs customers of its own"),
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(views.len());
    for v in views {
        let id = v.id.get_ref();
        let errors = |c: &Collector| c.findings.iter().filter(|f| !f.warning).count();
        let before = errors(c);
        if let Err(problem) = check_variant_id(id) {
            c.error(
                src,
                &v.id.span(),
                format!("{name}: variant id {id:?} {problem}"),
            );
        } else if seen.contains(&id.as_str()) {
            c.error(
                src,
                &v.id.span(),
                format!("{name}: variant id {id:?} is used twice"),
            );
        }
        seen.push(id);
        let weight = *v.weight.get_ref();
        if !(1..=MAX_WEIGHT).contains(&weight) {
            c.error(
                src,
                &v.weight.span(),
                format!(
                    "{name}, variant {id:?}: weight {weight} must be a whole number from 1 to {MAX_WEIGHT}"
                ),
            );
        }
        let variant_owner = format!("{name}, variant {id:?}");
        if v.give.is_empty() && !owner.followup {
            c.error(
                src,
                &v.id.span(),
                format!(
                    "{variant_owner} gives nothing: `give` lists no insert (the holdout is the group that gets nothing)"
                ),
            );
        }
        let give = give_list(
            src,
            &variant_owner,
            v.give,
            insert_index,
            inserts,
            owner.followup,
            c,
        );
        if errors(c) == before {
            out.push(Variant {
                id: id.clone(),
                give,
                weight: u32::try_from(weight).unwrap_or(1),
                template: v.template.map(|t| t.get_ref().clone()),
            });
        }
    }
    out
}

/// Variant ids name a group in the report and in the store: short, plain words.
fn check_variant_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id.len() > 64 {
        return Err("is longer than 64 characters");
    }
    if !id
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err("may hold only letters, digits, '-' and '_'");
    }
    Ok(())
}
