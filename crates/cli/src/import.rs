//! `fedsearch data import`: files as people have them (plain text, Markdown, HTML, or JSON /
//! JSONL records of `{id?, title, text}`) to a `corpus.jsonl` of passages, read exactly as the
//! tab reads dropped files (`fedsearch_core::document`), so `eval` and `simulate` measure the
//! unit the page searches.

use crate::error::{CliError, CliResult};
use fedsearch_core::data::{Document, to_jsonl};
use fedsearch_core::document::{RawDocument, TextKind, prepare_documents};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What an import wrote.
#[derive(Debug, PartialEq)]
pub struct Imported {
    pub documents: usize,
    pub passages: usize,
}

/// One JSON record, as the page accepts them.
#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    text: String,
}

/// Every file under `inputs` (directories are walked in name order; names starting with a dot
/// are skipped), in order.
fn files(inputs: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        let meta =
            std::fs::metadata(input).map_err(|e| CliError::Input(format!("cannot read {}: {e}", input.display())))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| CliError::Input(format!("cannot list {}: {e}", input.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
                .collect();
            entries.sort();
            out.extend(files(&entries)?);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

/// The documents of one file, grouped by how their text is written (as the page does: by
/// extension; JSON and JSONL files hold plain-text records; anything else is read as text and
/// refused later if it is not).
fn read_file(path: &Path) -> CliResult<(TextKind, Vec<RawDocument>)> {
    let bytes = std::fs::read(path).map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
    // Bytes that are not UTF-8 become U+FFFD, as a browser's `file.text()` makes them: the
    // binary check then refuses the file by name.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_lowercase();
    let title = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let bad_json = |e: serde_json::Error| CliError::Input(format!("{} is not valid JSON: {e}", path.display()));
    let records =
        |r: Vec<Record>| r.into_iter().map(|r| RawDocument { id: r.id, title: r.title, text: r.text }).collect();
    if name.ends_with(".jsonl") {
        let lines = text.lines().filter(|l| !l.trim().is_empty());
        let parsed: Result<Vec<Record>, _> = lines.map(serde_json::from_str).collect();
        return Ok((TextKind::Text, records(parsed.map_err(bad_json)?)));
    }
    if name.ends_with(".json") {
        let value: serde_json::Value = serde_json::from_str(&text).map_err(bad_json)?;
        let parsed = match value {
            serde_json::Value::Array(items) => items.into_iter().map(serde_json::from_value).collect(),
            one => serde_json::from_value(one).map(|r| vec![r]),
        };
        return Ok((TextKind::Text, records(parsed.map_err(bad_json)?)));
    }
    let kind = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("md" | "markdown") => TextKind::Markdown,
        Some("html" | "htm") => TextKind::Html,
        _ => TextKind::Text,
    };
    Ok((kind, vec![RawDocument { id: None, title, text }]))
}

/// Reads every input, cuts the documents into passages of at most `max_words` words and writes
/// `out/corpus.jsonl`. All or nothing: a refused document (empty, binary, too large) stops the
/// import with every refused one named, and nothing is written.
pub fn import(inputs: &[PathBuf], out: &Path, max_words: usize) -> CliResult<Imported> {
    let paths = files(inputs)?;
    if paths.is_empty() {
        return Err(CliError::Input("no files to import".into()));
    }
    let (mut passages, mut refused, mut documents) = (Vec::new(), Vec::new(), 0);
    for path in &paths {
        let (kind, docs) = read_file(path)?;
        documents += docs.len();
        match prepare_documents(docs, kind, max_words) {
            Ok(p) => passages.extend(p),
            Err(r) => refused.extend(r.into_iter().map(|why| format!("{}: {why}", path.display()))),
        }
    }
    if !refused.is_empty() {
        return Err(CliError::Input(format!("nothing was imported: {}", refused.join("; "))));
    }
    let docs: Vec<Document> =
        passages.into_iter().map(|p| Document { id: p.id, title: p.title, text: p.text }).collect();
    // Corpus::new refuses duplicate ids (the same file twice, or two records with one id).
    let corpus = fedsearch_core::data::Corpus::new(docs)?;
    std::fs::create_dir_all(out).map_err(|e| CliError::Io(format!("cannot create {}: {e}", out.display())))?;
    let path = out.join("corpus.jsonl");
    std::fs::write(&path, to_jsonl(&corpus.docs)).map_err(|e| CliError::Io(format!("{}: {e}", path.display())))?;
    Ok(Imported { documents, passages: corpus.docs.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_chunks_and_refuses_junk_by_name() {
        let dir = std::env::temp_dir().join(format!("fedsearch-import-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let long: String = (0..30).map(|i| format!("Sentence {i} is about rivers.")).collect::<Vec<_>>().join(" ");
        std::fs::write(src.join("a.md"), format!("# Rivers\n\n{long}")).unwrap();
        std::fs::write(src.join("b.html"), "<p>Lakes &amp; ponds.</p>").unwrap();
        std::fs::write(src.join("c.jsonl"), "{\"id\":\"x\",\"title\":\"X\",\"text\":\"Ex.\"}\n").unwrap();
        std::fs::write(src.join(".hidden"), "\0").unwrap();
        let out = dir.join("out");
        let got = import(std::slice::from_ref(&src), &out, 60).unwrap();
        assert_eq!(got, Imported { documents: 3, passages: 5 });
        let corpus =
            fedsearch_core::data::Corpus::from_jsonl(&std::fs::read_to_string(out.join("corpus.jsonl")).unwrap())
                .unwrap();
        assert_eq!(corpus.passages_of(&corpus.docs[0].id).len(), 3, "the long Markdown file in three passages");
        assert_eq!(corpus.docs[0].title, "a");
        assert!(corpus.docs[0].text.starts_with("Rivers Sentence 0 is about rivers."), "{:?}", corpus.docs[0].text);
        assert_eq!(corpus.docs[3].text, "Lakes & ponds.");
        assert_eq!((corpus.docs[4].id.as_str(), corpus.docs[4].title.as_str()), ("x", "X"));

        std::fs::write(src.join("d.png"), [0x89u8, b'P', b'N', b'G', 0xff, 0xfe, 0xfd, 0x00]).unwrap();
        std::fs::write(src.join("e.txt"), "").unwrap();
        std::fs::remove_file(out.join("corpus.jsonl")).unwrap();
        let e = import(&[src], &out, 60).unwrap_err().to_string();
        assert!(e.contains("d.png: \"d\" contains binary data") && e.contains("e.txt: \"e\" is empty"), "{e}");
        assert!(!out.join("corpus.jsonl").exists(), "nothing written");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
