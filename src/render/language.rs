//! Templates per language: which names on disk are language versions of a template
//! (`notes/welcome.de.hbs`, `emails/thanks.fr-CA/`), and which version a customer gets.
//!
//! A name's part after its last dot is a language when it is a BCP 47 language tag (a 2 or 3
//! letter language, optionally with script, region and variants: `de`, `fr-CA`, `zh-Hant`);
//! anything else keeps the dot inside the name (`winter.v2` is a template of its own). The
//! tag is matched without regard to case, and a customer gets the most specific version whose
//! tag their `locale` starts with, subtag by subtag (`fr-CA` → `fr-CA`, else `fr`, else the
//! default): RFC 4647 lookup, done over a few bytes per version so that rendering stays cheap.

use icu_locale_core::LanguageIdentifier;
use serde_json::Value;

/// The locale a template's data is read in when it names none (as the engine builds it).
pub(super) const DEFAULT_LOCALE: &str = "en";

/// A template name as written on disk, split into the name rules use and its language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateName<'a> {
    /// The name rules refer to (`welcome` for `welcome.de`).
    pub base: &'a str,
    /// The language of a language version, as BCP 47 writes it (`fr-CA`); none for the default.
    pub language: Option<String>,
}

/// Splits a note's file stem or an e-mail's folder name into base name and language.
/// `Err` holds a message for the file: a language written with `_` (`fr_CA`, a locale id but
/// not a BCP 47 tag), or a language with no name before it (`de.hbs`).
pub fn split_language(name: &str) -> Result<TemplateName<'_>, String> {
    let default = TemplateName {
        base: name,
        language: None,
    };
    let Some((base, suffix)) = name.rsplit_once('.') else {
        return Ok(default);
    };
    if suffix.contains('_') {
        let dashed = suffix.replace('_', "-");
        if let Some(tag) = language_tag(&dashed) {
            return Err(format!(
                "{suffix:?} is not a language tag in a file name: write {tag:?} ({base}.{tag}), \
                 BCP 47 separates with '-'"
            ));
        }
        return Ok(default);
    }
    let Some(tag) = language_tag(suffix) else {
        return Ok(default);
    };
    if base.is_empty() {
        return Err(format!(
            "a language version needs the template's name before its language ({suffix:?})"
        ));
    }
    Ok(TemplateName {
        base,
        language: Some(tag),
    })
}

/// The tag as BCP 47 writes it, when `text` is one with a known language (not `und`).
fn language_tag(text: &str) -> Option<String> {
    LanguageIdentifier::try_from_str(text)
        .ok()
        .filter(|id| !id.language.is_unknown())
        .map(|id| id.to_string())
}

/// The versions of one template: the default and one per language, the most specific first.
pub(super) struct Versions<T> {
    default: T,
    /// (tag in lower case, version), longer tags first so that the first match is the best.
    languages: Vec<(Box<str>, T)>,
}

impl<T> Versions<T> {
    pub(super) fn new(default: T) -> Self {
        Versions {
            default,
            languages: Vec::new(),
        }
    }

    /// Adds the version for a language tag (as [`split_language`] gives it).
    pub(super) fn add(&mut self, tag: &str, version: T) {
        self.languages
            .push((tag.to_ascii_lowercase().into_boxed_str(), version));
        // Stable: tags of one length keep their order (the folder's, sorted by name).
        self.languages
            .sort_by_key(|(tag, _)| std::cmp::Reverse(tag.len()));
    }

    /// The version for a customer's locale: the longest tag the locale starts with, subtag
    /// by subtag and in any case (`_` taken for `-`, as shops write `fr_CA`), else the default.
    pub(super) fn for_locale(&self, locale: &str) -> &T {
        let locale = locale.trim().as_bytes();
        self.languages
            .iter()
            .find(|(tag, _)| covers(tag.as_bytes(), locale))
            .map_or(&self.default, |(_, version)| version)
    }

    /// Every version, the default first.
    pub(super) fn all(&self) -> impl Iterator<Item = &T> {
        std::iter::once(&self.default).chain(self.languages.iter().map(|(_, v)| v))
    }

    /// How many language versions there are besides the default.
    pub(super) fn languages(&self) -> usize {
        self.languages.len()
    }
}

/// Whether `locale` is `tag` or `tag` followed by more subtags. `tag` is in lower case.
fn covers(tag: &[u8], locale: &[u8]) -> bool {
    let Some(head) = locale.get(..tag.len()) else {
        return false;
    };
    let same = head.iter().zip(tag).all(|(&l, &t)| {
        let l = if l == b'_' {
            b'-'
        } else {
            l.to_ascii_lowercase()
        };
        l == t
    });
    same && matches!(locale.get(tag.len()), None | Some(b'-' | b'_'))
}

/// The locale a template's data names (its top-level `locale`), else [`DEFAULT_LOCALE`].
pub(super) fn locale_of(data: &Value) -> &str {
    data.get("locale")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_LOCALE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str) -> (&str, Option<String>) {
        let n = split_language(name).expect("a valid name");
        (n.base, n.language)
    }

    #[test]
    fn the_part_after_the_last_dot_is_a_language_only_when_it_is_a_tag() {
        assert_eq!(split("welcome"), ("welcome", None));
        assert_eq!(split("thank-you"), ("thank-you", None));
        assert_eq!(split("welcome.de"), ("welcome", Some("de".into())));
        assert_eq!(split("welcome.fr-CA"), ("welcome", Some("fr-CA".into())));
        assert_eq!(split("welcome.FR-ca"), ("welcome", Some("fr-CA".into())));
        assert_eq!(
            split("welcome.zh-Hant"),
            ("welcome", Some("zh-Hant".into()))
        );
        assert_eq!(split("winter.v2.de"), ("winter.v2", Some("de".into())));
        // Not tags: the dot stays in the name.
        assert_eq!(split("winter.v2"), ("winter.v2", None));
        assert_eq!(split("spring.sale"), ("spring.sale", None));
        assert_eq!(split("welcome.german"), ("welcome.german", None));
        assert_eq!(split("welcome.und"), ("welcome.und", None));
        assert_eq!(split("welcome."), ("welcome.", None));
    }

    #[test]
    fn an_underscore_locale_or_a_language_alone_is_an_error() {
        let e = split_language("welcome.fr_CA").expect_err("not a tag");
        assert!(
            e.contains("\"fr-CA\"") && e.contains("welcome.fr-CA"),
            "{e}"
        );
        assert!(split_language(".de").is_err());
        // An underscore in what is no language is just part of the name.
        assert_eq!(
            split("welcome.spring_sale_2026"),
            ("welcome.spring_sale_2026", None)
        );
    }

    fn versions() -> Versions<&'static str> {
        let mut v = Versions::new("default");
        v.add("fr", "fr");
        v.add("fr-CA", "fr-CA");
        v.add("de", "de");
        v.add("en", "en");
        v
    }

    #[test]
    fn the_most_specific_version_the_locale_starts_with_is_chosen() {
        let v = versions();
        assert_eq!(*v.for_locale("fr-CA"), "fr-CA");
        assert_eq!(*v.for_locale("fr-ca"), "fr-CA");
        assert_eq!(*v.for_locale("FR_CA"), "fr-CA");
        assert_eq!(*v.for_locale("fr-CA-u-ca-gregory"), "fr-CA");
        assert_eq!(*v.for_locale("fr-BE"), "fr");
        assert_eq!(*v.for_locale("fr"), "fr");
        assert_eq!(*v.for_locale("de-AT"), "de");
        assert_eq!(*v.for_locale(" de "), "de");
        // A prefix that is not a whole subtag does not match.
        assert_eq!(*v.for_locale("fra"), "default");
        assert_eq!(*v.for_locale("dex"), "default");
        assert_eq!(*v.for_locale("it-IT"), "default");
        assert_eq!(*v.for_locale(""), "default");
        assert_eq!(*v.for_locale("klingon!"), "default");
        assert_eq!(v.all().count(), 5);
        assert_eq!(v.languages(), 4);
    }

    #[test]
    fn data_without_a_locale_is_read_in_english() {
        let v = versions();
        let data = serde_json::json!({ "customer": {} });
        assert_eq!(*v.for_locale(locale_of(&data)), "en");
        let data = serde_json::json!({ "locale": null });
        assert_eq!(locale_of(&data), "en");
        let data = serde_json::json!({ "locale": "fr-CA" });
        assert_eq!(*v.for_locale(locale_of(&data)), "fr-CA");
    }
}
