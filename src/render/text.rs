//! An e-mail's text part derived from its HTML, for e-mails without a `text.hbs`.

/// Render width for the derived text part: large enough that nothing wraps, because a wrapped
/// link target is a broken link and mail clients wrap text themselves.
const TEXT_WIDTH: usize = 100_000;

/// Derives an e-mail's text part from its rendered HTML: tags stripped, links kept as
/// "text (url)", entities decoded, whitespace collapsed, paragraphs on their own lines.
pub fn html_to_text(html: &str) -> Result<String, String> {
    let rendered = html2text::config::with_decorator(LinkDecorator::default())
        .no_table_borders()
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), TEXT_WIDTH)
        .map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(rendered.len());
    let mut blank_run = 0;
    for line in rendered.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out.push('\n');
    Ok(out)
}

/// Plain text without markdown-like marks; a link becomes "text (url)".
#[derive(Clone, Debug, Default)]
struct LinkDecorator {
    open_links: Vec<String>,
}

impl html2text::render::TextDecorator for LinkDecorator {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, ()) {
        self.open_links.push(url.to_owned());
        (String::new(), ())
    }

    fn decorate_link_end(&mut self) -> String {
        match self.open_links.pop() {
            Some(url) if !url.is_empty() && !url.starts_with('#') => format!(" ({url})"),
            _ => String::new(),
        }
    }

    fn decorate_em_start(&self) -> (String, ()) {
        (String::new(), ())
    }

    fn decorate_em_end(&self) -> String {
        String::new()
    }

    fn decorate_strong_start(&self) -> (String, ()) {
        (String::new(), ())
    }

    fn decorate_strong_end(&self) -> String {
        String::new()
    }

    fn decorate_strikeout_start(&self) -> (String, ()) {
        (String::new(), ())
    }

    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }

    fn decorate_code_start(&self) -> (String, ()) {
        (String::new(), ())
    }

    fn decorate_code_end(&self) -> String {
        String::new()
    }

    fn decorate_preformat_first(&self) {}

    fn decorate_preformat_cont(&self) {}

    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, ()) {
        (title.to_owned(), ())
    }

    fn header_prefix(&self, _level: usize) -> String {
        String::new()
    }

    fn quote_prefix(&self) -> String {
        "> ".to_owned()
    }

    fn unordered_item_prefix(&self) -> String {
        "- ".to_owned()
    }

    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }

    fn make_subblock_decorator(&self) -> Self {
        LinkDecorator::default()
    }
}
