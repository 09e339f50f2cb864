//! Reading documents as people have them, one way for the tab and the CLI: HTML and Markdown
//! to plain text, input checks (empty, binary, oversized), long documents cut into passages on
//! sentence boundaries (`id`, `id#2`, `id#3`, ...), stable ids (a hash of the content) for
//! documents that come without one, and search snippets.

use sha2::{Digest, Sha256};

/// How a document's text is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Text,
    Markdown,
    Html,
}

impl TextKind {
    /// Parses `"text"`, `"markdown"`/`"md"` or `"html"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "txt" | "plain" | "" => Some(Self::Text),
            "markdown" | "md" => Some(Self::Markdown),
            "html" | "htm" => Some(Self::Html),
            _ => None,
        }
    }

    /// Plain text of `s`.
    pub fn to_plain(self, s: &str) -> String {
        match self {
            Self::Text => normalize_space(s),
            Self::Markdown => markdown_to_text(s),
            Self::Html => html_to_text(s),
        }
    }
}

/// Collapses runs of spaces/tabs, keeps paragraph breaks (one blank line at most), trims.
pub fn normalize_space(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&line);
    }
    out
}

/// The text of an HTML document: no tags, no `<script>`/`<style>`/`<head>` content, block
/// elements as line breaks, the common entities decoded.
pub fn html_to_text(html: &str) -> String {
    const SKIP: [&str; 6] = ["script", "style", "head", "noscript", "template", "svg"];
    const BLOCK: [&str; 22] = [
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "blockquote",
        "pre",
        "hr",
        "title",
    ];
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..lt]));
        let after = &rest[lt + 1..];
        if let Some(comment) = after.strip_prefix("!--") {
            rest = comment.find("-->").map_or("", |e| &comment[e + 3..]);
            continue;
        }
        let Some(gt) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = &after[..gt];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        rest = &after[gt + 1..];
        if !closing && SKIP.contains(&name.as_str()) && !tag.ends_with('/') {
            let close = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = match lower.find(&close) {
                Some(p) => rest[p..].find('>').map_or("", |g| &rest[p + g + 1..]),
                None => "",
            };
            continue;
        }
        if BLOCK.contains(&name.as_str()) {
            out.push('\n');
        } else {
            out.push(' ');
        }
    }
    out.push_str(&decode_entities(rest));
    normalize_inline(&out)
}

/// Like [`normalize_space`] but a single line break inside a paragraph stays a break.
fn normalize_inline(s: &str) -> String {
    let lines: Vec<String> =
        s.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|l| !l.is_empty()).collect();
    lines.join("\n")
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let ent = &after[..e];
            let c = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                "mdash" => Some('—'),
                "ndash" => Some('–'),
                _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                    u32::from_str_radix(&ent[2..], 16).ok().and_then(char::from_u32)
                }
                _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text of a Markdown document: no heading/list/quote markers, emphasis, code fences,
/// link targets or images; link texts kept.
pub fn markdown_to_text(md: &str) -> String {
    let mut lines = Vec::new();
    let mut in_fence = false;
    for raw in md.lines() {
        let t = raw.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            lines.push(raw.to_string());
            continue;
        }
        let mut t = t.trim_start_matches('#').trim_start();
        while let Some(r) = t.strip_prefix('>') {
            t = r.trim_start();
        }
        for marker in ["- ", "* ", "+ "] {
            if let Some(r) = t.strip_prefix(marker) {
                t = r;
            }
        }
        let digits = t.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && t[digits..].starts_with(". ") {
            t = &t[digits + 2..];
        }
        if t.chars().all(|c| matches!(c, '-' | '=' | '*' | '_' | ' ')) && !t.is_empty() {
            lines.push(String::new());
            continue;
        }
        lines.push(strip_inline_markdown(t));
    }
    normalize_space(&html_to_text_if_tags(&lines.join("\n")))
}

fn html_to_text_if_tags(s: &str) -> String {
    if s.contains("</") || s.contains("<br") { html_to_text(s) } else { s.to_string() }
}

/// Removes `![alt](src)`, turns `[text](url)` into `text`, drops `*`, `_`, `` ` `` emphasis.
fn strip_inline_markdown(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let is_image = c == '!' && chars.get(i + 1) == Some(&'[');
        if c == '[' || is_image {
            let open = if is_image { i + 1 } else { i };
            if let Some(close) = (open + 1..chars.len()).find(|&j| chars[j] == ']')
                && chars.get(close + 1) == Some(&'(')
                && let Some(end) = (close + 2..chars.len()).find(|&j| chars[j] == ')')
            {
                if !is_image {
                    out.extend(&chars[open + 1..close]);
                }
                i = end + 1;
                continue;
            }
        }
        if matches!(c, '*' | '`') || (c == '_' && (i == 0 || !chars[i - 1].is_alphanumeric())) {
            i += 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// A stable id for content without one: `doc-` + the first 16 hex digits of SHA-256.
pub fn content_id(title: &str, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(title.as_bytes());
    h.update([0u8]);
    h.update(text.as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("doc-{hex}")
}

/// Longest passage, in words, a document is cut into (the encoder reads at most 256 tokens).
pub const CHUNK_WORDS: usize = 150;

/// Largest document accepted, in bytes of its raw text (a book is ~1 MB).
pub const MAX_DOCUMENT_BYTES: usize = 5 << 20;

/// Why a document is refused before anything is embedded, or `None` when it is fine: empty
/// (no text after conversion), binary (NUL bytes, or more than 1 % of its characters are
/// control characters or U+FFFD, which is what a browser's `file.text()` makes of bytes that
/// are not UTF-8), or too large.
pub fn document_problem(raw: &str, plain: &str) -> Option<String> {
    if raw.len() > MAX_DOCUMENT_BYTES {
        return Some(format!(
            "is {:.1} MiB; the limit is {} MiB",
            raw.len() as f64 / (1 << 20) as f64,
            MAX_DOCUMENT_BYTES >> 20
        ));
    }
    let (mut chars, mut odd) = (0usize, 0usize);
    for c in raw.chars() {
        chars += 1;
        if c == '\0' {
            return Some("contains binary data (NUL bytes), not text".into());
        }
        if c == '\u{FFFD}' || (c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{0C}')) {
            odd += 1;
        }
    }
    if odd * 100 > chars {
        return Some("does not look like text (binary data?): add plain text, Markdown or HTML".into());
    }
    if plain.trim().is_empty() {
        return Some("is empty".into());
    }
    None
}

/// A document as it comes in: an id (or none: a content hash is used), a title and raw text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawDocument {
    pub id: Option<String>,
    pub title: String,
    pub text: String,
}

/// One passage of a document, in the unit every method searches.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    pub id: String,
    pub title: String,
    pub text: String,
}

/// The id of a document's `i`-th passage (0-based): `id`, then `id#2`, `id#3`, ...
pub fn passage_id(doc_id: &str, i: usize) -> String {
    if i == 0 { doc_id.to_string() } else { format!("{doc_id}#{}", i + 1) }
}

/// The document id a passage id belongs to: `doc#3` → `doc` (an id without a passage number is
/// its own document).
pub fn document_id(passage_id: &str) -> &str {
    match passage_id.rsplit_once('#') {
        Some((base, n)) if !base.is_empty() && n.parse::<u32>().is_ok() => base,
        _ => passage_id,
    }
}

/// Turns raw documents into passages: text conversion, the checks of [`document_problem`],
/// chunking into passages of at most `max_words` words, content-hash ids where none is given.
/// All or nothing: when any document is refused, the error lists every refused one (by title,
/// or "document N"), so nothing is added that would show up as garbage in results.
pub fn prepare_documents(
    docs: impl IntoIterator<Item = RawDocument>,
    kind: TextKind,
    max_words: usize,
) -> Result<Vec<Passage>, Vec<String>> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        let text = kind.to_plain(&d.text);
        let title = d.title.trim().to_string();
        if let Some(problem) = document_problem(&d.text, &text) {
            let name = if title.is_empty() { format!("document {}", i + 1) } else { format!("{title:?}") };
            refused.push(format!("{name} {problem}"));
            continue;
        }
        let id = d.id.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| content_id(&title, &text));
        for (k, chunk) in chunk_text(&text, max_words).into_iter().enumerate() {
            out.push(Passage { id: passage_id(&id, k), title: title.clone(), text: chunk });
        }
    }
    if refused.is_empty() { Ok(out) } else { Err(refused) }
}

/// Cuts `text` into chunks of at most `max_words` words, on sentence boundaries when it can
/// (a single over-long sentence is cut on words). Short texts come back whole.
pub fn chunk_text(text: &str, max_words: usize) -> Vec<String> {
    let max_words = max_words.max(8);
    if text.split_whitespace().count() <= max_words {
        return vec![text.trim().to_string()];
    }
    let mut chunks = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut count = 0;
    let flush = |current: &mut Vec<String>, count: &mut usize, chunks: &mut Vec<String>| {
        if !current.is_empty() {
            chunks.push(current.join(" "));
            current.clear();
            *count = 0;
        }
    };
    for paragraph in text.split("\n\n") {
        for sentence in crate::text::sentences(paragraph) {
            let words: Vec<&str> = sentence.split_whitespace().collect();
            if words.len() > max_words {
                flush(&mut current, &mut count, &mut chunks);
                for piece in words.chunks(max_words) {
                    chunks.push(piece.join(" "));
                }
                continue;
            }
            if count + words.len() > max_words {
                flush(&mut current, &mut count, &mut chunks);
            }
            count += words.len();
            current.push(sentence);
        }
    }
    flush(&mut current, &mut count, &mut chunks);
    chunks
}

/// A short snippet of `text` around the first word of `query` it contains (else its start).
pub fn snippet(text: &str, query: &str, max_chars: usize) -> String {
    let lower = text.to_lowercase();
    let pos = crate::text::words(query)
        .iter()
        .filter(|w| w.len() > 2 && !crate::text::is_stop_word(w))
        .filter_map(|w| lower.find(w.as_str()))
        .min()
        .unwrap_or(0);
    // Lower-casing can change byte lengths; fall back to the start if `pos` is not a boundary.
    let pos = if text.is_char_boundary(pos) && lower.len() == text.len() { pos } else { 0 };
    let start = text[..pos].rfind(['.', '\n']).map_or(0, |p| p + 1);
    let start = if pos - start > max_chars / 2 { pos.saturating_sub(max_chars / 3) } else { start };
    let start = (0..=start).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    let body: String = text[start..].trim_start().chars().take(max_chars).collect();
    let mut s = String::new();
    if start > 0 {
        s.push('…');
    }
    s.push_str(&body);
    if text[start..].trim_start().chars().count() > max_chars {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_drops_tags_scripts_and_decodes_entities() {
        let html = "<html><head><title>T</title><style>p{}</style></head><body><h1>Paris</h1>\
            <p>Capital &amp; largest city of <b>France</b>.</p><script>alert('x')</script>\
            <!-- hidden --><ul><li>one</li><li>two&#39;s</li></ul></body></html>";
        assert_eq!(html_to_text(html), "Paris\nCapital & largest city of France .\none\ntwo's");
    }

    #[test]
    fn markdown_keeps_text_only() {
        let md = "# Title\n\nSome *bold* and `code` with a [link](http://x.y) ![img](a.png).\n\n- item one\n1. first\n\n```\nlet x = 1;\n```\n> quoted";
        assert_eq!(
            markdown_to_text(md),
            "Title\n\nSome bold and code with a link .\n\nitem one\nfirst\n\nlet x = 1;\nquoted"
        );
    }

    #[test]
    fn content_ids_are_stable_and_distinct() {
        assert_eq!(content_id("a", "b"), content_id("a", "b"));
        assert_ne!(content_id("a", "b"), content_id("ab", ""));
        assert!(content_id("a", "b").starts_with("doc-") && content_id("a", "b").len() == 20);
    }

    #[test]
    fn chunks_follow_sentences_and_respect_the_limit() {
        let text = "One two three four five six seven eight. Nine ten eleven twelve thirteen. \
            Fourteen fifteen sixteen seventeen eighteen nineteen twenty.";
        let chunks = chunk_text(text, 8);
        assert_eq!(chunks.len(), 3, "{chunks:?}");
        assert!(chunks.iter().all(|c| c.split_whitespace().count() <= 8));
        assert_eq!(chunk_text("short text", 100), vec!["short text"]);
        let long = vec!["w"; 30].join(" ");
        assert_eq!(chunk_text(&long, 10).len(), 3);
    }

    #[test]
    fn snippets_center_on_the_query() {
        let text = "Intro sentence here. The Eiffel Tower is in Paris. Other things follow.";
        assert!(snippet(text, "eiffel", 30).starts_with("…The Eiffel Tower"), "{}", snippet(text, "eiffel", 30));
        assert_eq!(snippet("abc", "zzz", 10), "abc");
    }

    #[test]
    fn passage_ids_name_their_document() {
        assert_eq!(passage_id("doc", 0), "doc");
        assert_eq!(passage_id("doc", 2), "doc#3");
        for i in 0..4 {
            assert_eq!(document_id(&passage_id("a#b", i)), "a#b");
        }
        assert_eq!(document_id("#2"), "#2");
        assert_eq!(document_id("x#"), "x#");
    }

    #[test]
    fn preparing_chunks_names_and_refuses_all_or_nothing() {
        let long: String = (0..40).map(|i| format!("Sentence number {i} has six words.")).collect::<Vec<_>>().join(" ");
        let doc = |id: Option<&str>, title: &str, text: &str| RawDocument {
            id: id.map(str::to_string),
            title: title.into(),
            text: text.into(),
        };
        let passages = prepare_documents(
            vec![doc(Some("long"), " Long ", &long), doc(None, "Short", "<p>One &amp; only.</p>")],
            TextKind::Html,
            100,
        )
        .unwrap();
        let ids: Vec<&str> = passages.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids[..3], ["long", "long#2", "long#3"]);
        assert_eq!(passages[3].id, content_id("Short", "One & only."));
        assert_eq!(passages[3].text, "One & only.");
        assert!(passages.iter().all(|p| p.text.split_whitespace().count() <= 100));
        assert_eq!(passages[0].title, "Long");
        let refused = prepare_documents(
            vec![doc(None, "ok", "fine text"), doc(None, "", "  "), doc(None, "bin", "a\0b")],
            TextKind::Text,
            100,
        )
        .unwrap_err();
        assert_eq!(refused, vec!["document 2 is empty", "\"bin\" contains binary data (NUL bytes), not text"]);
    }
}
