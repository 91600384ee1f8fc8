//! Where an item's category comes from (`category` of `[connectors.*]`): the Shopify line
//! item's vendor, a `sku,category` catalogue file read at start, or the product as the shop's
//! API describes it (Shopify's product type or a tag with a prefix, WooCommerce's first
//! category), looked up by product id and cached.
//!
//! Categories are kept as the shop writes them, trimmed. An item whose category cannot be found
//! (a SKU not in the catalogue, an empty vendor, a product without type, tag or category, a
//! product the shop no longer has) is [`UNCATEGORIZED`]: a rule cannot react to it, but the
//! order is not held back for it.

use super::mapping::{LookupError, ProductDirectory, ProductInfo};
use crate::config::CategorySource;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The category of an item whose category cannot be found.
pub const UNCATEGORIZED: &str = "uncategorized";

/// The most products whose description is kept in memory; the oldest is forgotten first.
pub const CACHE_PRODUCTS: usize = 10_000;

/// What a line item offers to find its category by.
#[derive(Debug, Clone, Copy, Default)]
pub struct ItemKeys<'a> {
    pub sku: &'a str,
    pub vendor: Option<&'a str>,
    pub product_id: Option<&'a str>,
}

/// Finds items' categories for one connector.
pub struct Categories {
    source: Source,
}

enum Source {
    Vendor,
    Catalogue(HashMap<String, String>),
    Product {
        directory: Arc<dyn ProductDirectory>,
        pick: Pick,
        cache: Mutex<Cache>,
    },
}

#[derive(Debug, Clone)]
enum Pick {
    ProductType,
    TagPrefix(String),
    FirstCategory,
}

impl Categories {
    /// Reads the catalogue file when the source is one; a source that asks the shop's API
    /// needs `products`.
    pub fn new(
        source: &CategorySource,
        products: Option<Arc<dyn ProductDirectory>>,
    ) -> Result<Categories, String> {
        let pick = match source {
            CategorySource::Vendor => {
                return Ok(Categories {
                    source: Source::Vendor,
                });
            }
            CategorySource::Catalogue(path) => {
                return Ok(Categories {
                    source: Source::Catalogue(load_catalogue(path)?),
                });
            }
            CategorySource::ProductType => Pick::ProductType,
            CategorySource::TagPrefix(prefix) => Pick::TagPrefix(prefix.clone()),
            CategorySource::ProductCategories => Pick::FirstCategory,
        };
        let directory = products.ok_or_else(|| {
            "categories are looked up through the shop's API, but no product directory was given"
                .to_string()
        })?;
        Ok(Categories {
            source: Source::Product {
                directory,
                pick,
                cache: Mutex::new(Cache::default()),
            },
        })
    }

    /// The item's category, or [`UNCATEGORIZED`]. A directory that does not answer is an
    /// error, so that the webhook is retried rather than mapped without its categories.
    pub async fn of(&self, item: ItemKeys<'_>) -> Result<String, LookupError> {
        let found = match &self.source {
            Source::Vendor => item.vendor.map(str::to_string),
            Source::Catalogue(map) => map.get(item.sku.trim()).cloned(),
            Source::Product {
                directory,
                pick,
                cache,
            } => match item.product_id {
                None => None,
                Some(id) => {
                    let cached = lock(cache).get(id);
                    let info = match cached {
                        Some(info) => info,
                        None => {
                            let info = directory.product(id).await?;
                            lock(cache).put(id, info.clone());
                            info
                        }
                    };
                    info.and_then(|p| pick.from(&p))
                }
            },
        };
        Ok(found
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| UNCATEGORIZED.to_string()))
    }
}

impl Pick {
    fn from(&self, p: &ProductInfo) -> Option<String> {
        match self {
            Pick::ProductType => p.product_type.clone(),
            Pick::TagPrefix(prefix) => p
                .tags
                .iter()
                .map(|t| t.trim())
                .find_map(|t| t.strip_prefix(prefix.as_str()))
                .map(str::to_string),
            Pick::FirstCategory => p.categories.first().cloned(),
        }
    }
}

/// A poisoned lock only means another lookup panicked midway; the map itself is still whole.
fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Product descriptions by id, "no such product" included, forgetting the oldest beyond
/// [`CACHE_PRODUCTS`]. A product edited in the shop is seen again after a restart.
#[derive(Default)]
struct Cache {
    entries: HashMap<String, Option<ProductInfo>>,
    order: VecDeque<String>,
}

impl Cache {
    fn get(&self, id: &str) -> Option<Option<ProductInfo>> {
        self.entries.get(id).cloned()
    }

    fn put(&mut self, id: &str, info: Option<ProductInfo>) {
        if self.entries.insert(id.to_string(), info).is_some() {
            return;
        }
        self.order.push_back(id.to_string());
        while self.order.len() > CACHE_PRODUCTS {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

/// Reads a `sku,category` file: one pair a line, an optional `sku,category` header line,
/// blank lines and `#` comments skipped, fields optionally in double quotes. An error names
/// the file and line.
pub fn load_catalogue(path: &Path) -> Result<HashMap<String, String>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    parse_catalogue(&text, &shown.to_string())
}

fn parse_catalogue(text: &str, file: &str) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut seen_content = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((sku, category)) = line.split_once(',') else {
            return Err(format!("{file}:{n}: expected sku,category, found {line:?}"));
        };
        let (sku, category) = (unquote(sku), unquote(category));
        let header = !seen_content
            && sku.eq_ignore_ascii_case("sku")
            && category.eq_ignore_ascii_case("category");
        seen_content = true;
        if header {
            continue;
        }
        if sku.is_empty() || category.is_empty() || category.contains(',') {
            return Err(format!("{file}:{n}: expected sku,category, found {line:?}"));
        }
        if let Some(before) = first_line.get(sku) {
            return Err(format!(
                "{file}:{n}: SKU {sku:?} is already on line {before}"
            ));
        }
        first_line.insert(sku.to_string(), n);
        map.insert(sku.to_string(), category.to_string());
    }
    Ok(map)
}

fn unquote(field: &str) -> &str {
    let f = field.trim();
    f.strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(f)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Directory {
        calls: AtomicUsize,
        fail: bool,
    }

    #[async_trait]
    impl ProductDirectory for Directory {
        async fn product(&self, id: &str) -> Result<Option<ProductInfo>, LookupError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(LookupError("the shop's API answered 502".into()));
            }
            Ok((id != "404").then(|| ProductInfo {
                product_type: Some(" Books ".into()),
                tags: vec!["sale".into(), "cat-fragrance".into()],
                categories: vec!["Home".into(), "Candles".into()],
            }))
        }
    }

    fn directory(fail: bool) -> Arc<Directory> {
        Arc::new(Directory {
            calls: AtomicUsize::new(0),
            fail,
        })
    }

    fn product(id: &str) -> ItemKeys<'_> {
        ItemKeys {
            sku: "S",
            vendor: None,
            product_id: Some(id),
        }
    }

    #[tokio::test]
    async fn the_directory_is_asked_once_per_product_missing_ones_included() {
        let d = directory(false);
        let c = Categories::new(&CategorySource::ProductType, Some(d.clone())).unwrap();
        for _ in 0..3 {
            assert_eq!(c.of(product("7")).await.unwrap(), "Books");
            assert_eq!(c.of(product("404")).await.unwrap(), UNCATEGORIZED);
        }
        assert_eq!(d.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn tags_and_categories_pick_their_part() {
        let tag = Categories::new(
            &CategorySource::TagPrefix("cat-".into()),
            Some(directory(false)),
        )
        .unwrap();
        assert_eq!(tag.of(product("1")).await.unwrap(), "fragrance");
        let wc =
            Categories::new(&CategorySource::ProductCategories, Some(directory(false))).unwrap();
        assert_eq!(wc.of(product("1")).await.unwrap(), "Home");
        assert_eq!(wc.of(ItemKeys::default()).await.unwrap(), UNCATEGORIZED);
    }

    #[tokio::test]
    async fn a_lookup_error_propagates_and_is_not_cached() {
        let d = directory(true);
        let c = Categories::new(&CategorySource::ProductType, Some(d.clone())).unwrap();
        assert!(c.of(product("7")).await.is_err());
        assert!(c.of(product("7")).await.is_err());
        assert_eq!(d.calls.load(Ordering::SeqCst), 2);
        assert!(Categories::new(&CategorySource::ProductType, None).is_err());
    }

    #[tokio::test]
    async fn vendors_are_trimmed_and_empty_ones_uncategorized() {
        let c = Categories::new(&CategorySource::Vendor, None).unwrap();
        let item = |vendor| ItemKeys {
            sku: "S",
            vendor,
            product_id: None,
        };
        assert_eq!(
            c.of(item(Some(" Acme Books "))).await.unwrap(),
            "Acme Books"
        );
        assert_eq!(c.of(item(Some("  "))).await.unwrap(), UNCATEGORIZED);
        assert_eq!(c.of(item(None)).await.unwrap(), UNCATEGORIZED);
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_oldest() {
        let mut cache = Cache::default();
        for i in 0..=CACHE_PRODUCTS {
            cache.put(&i.to_string(), None);
        }
        assert_eq!(cache.entries.len(), CACHE_PRODUCTS);
        assert!(cache.get("0").is_none());
        assert!(cache.get(&CACHE_PRODUCTS.to_string()).is_some());
    }

    #[test]
    fn catalogues_read_headers_quotes_and_comments() {
        let map = parse_catalogue(
            "\u{feff}sku,category\r\n# books\nBK-1, books\n\"FR-2\",\"fragrance\"\n\n",
            "c.csv",
        )
        .unwrap();
        assert_eq!(map.get("BK-1").map(String::as_str), Some("books"));
        assert_eq!(map.get("FR-2").map(String::as_str), Some("fragrance"));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn catalogue_errors_name_file_and_line() {
        for (text, expected) in [
            ("sku,category\nBK-1\n", "c.csv:2: expected sku,category"),
            ("BK-1,books\n,home\n", "c.csv:2: expected sku,category"),
            ("BK-1,books\nBK-2,\n", "c.csv:2: expected sku,category"),
            (
                "BK-1,books\n\nBK-1,home\n",
                "c.csv:3: SKU \"BK-1\" is already on line 1",
            ),
        ] {
            let e = parse_catalogue(text, "c.csv").map(|_| ()).unwrap_err();
            assert!(e.starts_with(expected), "{text:?}: {e}");
        }
        let missing = load_catalogue(Path::new("/nonexistent/catalogue.csv")).unwrap_err();
        assert!(
            missing.starts_with("/nonexistent/catalogue.csv: "),
            "{missing}"
        );
    }
}
