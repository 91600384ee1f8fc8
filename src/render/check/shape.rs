//! What a template may read (docs/REFERENCE.md §6): the shape of the data given to notes and to
//! e-mails, as far as the checker can know it ahead of rendering.

#[derive(Clone, Copy, Debug)]
pub(super) enum Ty {
    /// Not known statically (an object's values under `#each`, a helper's result): anything goes.
    Any,
    /// A string, number, boolean or null: has no members.
    Scalar,
    Object(&'static [(&'static str, Ty)]),
    List(&'static Ty),
}

const S: Ty = Ty::Scalar;
const STRINGS: Ty = Ty::List(&Ty::Scalar);
const ITEM: Ty = Ty::Object(&[
    ("sku", S),
    ("name", S),
    ("category", S),
    ("quantity", S),
    ("unit_price", S),
]);
const COUPON: Ty = Ty::Object(&[
    ("code", S),
    ("title", S),
    ("amount", S),
    ("currency", S),
    ("min_order", S),
    ("expires_on", S),
]);
const CUSTOMER: Ty = Ty::Object(&[
    ("first_name", S),
    ("last_name", S),
    ("email", S),
    ("orders_count", S),
    ("lifetime_spend", S),
    ("categories_bought", STRINGS),
    ("nps_group", S),
]);
const ORDER: Ty = Ty::Object(&[
    ("id", S),
    ("total", S),
    ("currency", S),
    ("items", Ty::List(&ITEM)),
    ("categories", STRINGS),
    ("placed_at", S),
]);
const DELIVERY: Ty = Ty::Object(&[("delivered_at", S), ("late_days", S)]);
const SHOP: Ty = Ty::Object(&[("name", S), ("url", S)]);
pub(super) const NOTE_ROOT: Ty = Ty::Object(&[
    ("customer", CUSTOMER),
    ("order", ORDER),
    ("coupons", Ty::List(&COUPON)),
    ("coupon", COUPON),
    ("delivery", DELIVERY),
    ("shop", SHOP),
    ("locale", S),
]);
pub(super) const EMAIL_ROOT: Ty = Ty::Object(&[
    ("customer", CUSTOMER),
    ("order", ORDER),
    ("coupons", Ty::List(&COUPON)),
    ("coupon", COUPON),
    ("delivery", DELIVERY),
    ("shop", SHOP),
    ("locale", S),
    ("unsubscribe_url", S),
]);

/// Members only e-mails have, so a note that names one gets a message saying why.
pub(super) const EMAIL_ONLY: &[&str] = &["unsubscribe_url"];
