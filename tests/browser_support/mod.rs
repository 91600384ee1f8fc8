//! Shared by the browser tests: finding the Chromium to drive and starting it, the example
//! orders, the folder for screenshots, and a headless Chromium tab's viewport, whole-page PNG,
//! JavaScript evaluation, typing into a field, an element's text and waiting on the page.

#![allow(dead_code)]

use headless_chrome::protocol::cdp::Emulation;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str = "apt-get install -y chromium";

/// Starts headless Chromium and opens a tab at `viewport` (width, height), with a 30 s
/// default timeout. Keep the browser alive as long as the tab is used.
pub fn launch(chromium: PathBuf, viewport: (u32, u32)) -> (Browser, std::sync::Arc<Tab>) {
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium))
            .headless(true)
            // Containers and CI run as root, where Chromium refuses to start sandboxed.
            .sandbox(false)
            .window_size(Some(viewport))
            .idle_browser_timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("launch options"),
    )
    .expect("start chromium");
    let tab = browser.new_tab().expect("tab");
    tab.set_default_timeout(std::time::Duration::from_secs(30));
    set_viewport(&tab, viewport);
    (browser, tab)
}

/// The browser to drive: `PACKWELL_CHROMIUM`, else the first usual name on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PACKWELL_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "PACKWELL_CHROMIUM={} is not a file",
            path.display()
        );
        return Some(path);
    }
    let dirs = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&dirs).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// An order event from `examples/orders/`.
pub fn example_order(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/orders")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `target/test-artifacts/`, for files a person looks at after the run.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create test-artifacts");
    dir
}

/// The page's visible area, `(width, height)`: the window size includes the browser's own
/// frame in some versions, so it is set exactly here.
pub fn set_viewport(tab: &Tab, (width, height): (u32, u32)) {
    tab.call_method(Emulation::SetDeviceMetricsOverride {
        width,
        height,
        device_scale_factor: 1.0,
        mobile: false,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .expect("set the viewport");
}

/// A PNG of the whole page, not just the part on screen: the viewport (`(width, height)`, as
/// the test set it) grows to the page's height for the picture, then goes back.
pub fn whole_page_png(tab: &Tab, viewport: (u32, u32)) -> Vec<u8> {
    let (width, height) = viewport;
    let page_height = eval(tab, "document.documentElement.scrollHeight")
        .as_u64()
        .and_then(|h| u32::try_from(h).ok())
        .expect("page height");
    set_viewport(tab, (width, page_height.max(height)));
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    set_viewport(tab, viewport);
    png
}

/// The value of a JavaScript expression in the page.
pub fn eval(tab: &Tab, expression: &str) -> Value {
    tab.evaluate(expression, false)
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
        .value
        .unwrap_or(Value::Null)
}

/// Chromium, or None after saying the test is skipped; with `PACKWELL_REQUIRE_TOOLS=1` (CI) a
/// missing Chromium fails the test instead.
pub fn chromium_or_skip() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        assert!(
            std::env::var("PACKWELL_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "chromium not found (set PACKWELL_CHROMIUM or install it: {INSTALL_HINT})"
        );
        eprintln!("skipped: chromium not installed ({INSTALL_HINT})");
    }
    found
}

/// Clicks into a field and types as a keyboard (or a scanner) would, over what it held.
pub fn type_into(tab: &Tab, selector: &str, text: &str) {
    tab.wait_for_element(selector)
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
    eval(
        tab,
        &format!("document.querySelector('{selector}').select()"),
    );
    tab.type_str(text)
        .unwrap_or_else(|e| panic!("type into {selector}: {e}"));
}

/// The element's text as the page set it (`textContent`: the note's line breaks included).
pub fn text_of(tab: &Tab, selector: &str) -> String {
    match eval(
        tab,
        &format!("document.querySelector('{selector}').textContent"),
    ) {
        Value::String(text) => text,
        other => panic!("no text in {selector}: {other}"),
    }
}

/// Waits (up to 30 s) until a JavaScript condition holds in the page.
pub fn wait_for_page(tab: &Tab, what: &str, condition: &str) {
    wait_for_page_within(tab, what, condition, Duration::from_secs(30));
}

/// Waits until a JavaScript condition holds in the page, polling; panics after `timeout`.
pub fn wait_for_page_within(tab: &Tab, what: &str, condition: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while eval(tab, condition) != Value::Bool(true) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
