//! Corpus and query files: `corpus.jsonl` lines `{"id","title","text"}` and `queries.jsonl` (or
//! labelled training pairs) lines `{"query","doc_id"}`. Parsing checks everything a user can get
//! wrong and says which line is at fault.

use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One document. `id` is any string, unique within a corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub text: String,
}

impl Document {
    /// The text every method sees: `title + ". " + text` (just the text when untitled).
    pub fn full_text(&self) -> String {
        if self.title.trim().is_empty() { self.text.clone() } else { format!("{}. {}", self.title, self.text) }
    }
}

/// Documents with an id → position index.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub docs: Vec<Document>,
    index: HashMap<String, usize>,
    /// Positions of the later passages of a chunked document (`id#2`, `id#3`, ...; see
    /// [`crate::document`]) by document id.
    later_passages: HashMap<String, Vec<usize>>,
}

impl Corpus {
    /// Builds a corpus, refusing an empty one and duplicate or empty ids.
    pub fn new(docs: Vec<Document>) -> Result<Self> {
        if docs.is_empty() {
            return Err(CoreError::Data("the corpus has no documents".into()));
        }
        let mut index = HashMap::with_capacity(docs.len());
        let mut later_passages: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in docs.iter().enumerate() {
            let doc_id = crate::document::document_id(&d.id);
            if doc_id != d.id {
                later_passages.entry(doc_id.to_string()).or_default().push(i);
            }
            if d.id.is_empty() {
                return Err(CoreError::Data(format!("document {} has an empty id", i + 1)));
            }
            if d.text.trim().is_empty() && d.title.trim().is_empty() {
                return Err(CoreError::Data(format!("document {:?} has no title and no text", d.id)));
            }
            if index.insert(d.id.clone(), i).is_some() {
                return Err(CoreError::Data(format!("document id {:?} appears twice", d.id)));
            }
        }
        Ok(Self { docs, index, later_passages })
    }

    /// Parses `corpus.jsonl` text.
    pub fn from_jsonl(text: &str) -> Result<Self> {
        Self::new(parse_jsonl(text, "corpus")?)
    }

    /// Position of a document id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Positions of every passage of document `id`: the document itself, then, in a corpus
    /// chunked like the tab's (`fedsearch data import`), its passages `id#2`, `id#3`, ...
    /// Empty when the corpus has none.
    pub fn passages_of(&self, id: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self.position(id).into_iter().collect();
        out.extend(self.later_passages.get(id).into_iter().flatten().copied());
        out
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Always false: a corpus is never empty.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Document ids in order.
    pub fn ids(&self) -> Vec<String> {
        self.docs.iter().map(|d| d.id.clone()).collect()
    }

    /// Every document's `full_text`.
    pub fn full_texts(&self) -> Vec<String> {
        self.docs.iter().map(Document::full_text).collect()
    }
}

/// A labelled query: its text and the positions of every document that answers it (one or more).
pub type LabelledQuery = (String, Vec<usize>);

/// One line of a queries/pairs file as written: `{"query", "doc_id"}` (one gold document) or
/// `{"query", "doc_ids": [...]}` (several; a hit is any of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryLine {
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_ids: Option<Vec<String>>,
}

impl QueryLine {
    /// The gold ids of line `line` (1-based, for messages): `doc_id` or `doc_ids`, never both,
    /// never none, never an empty list.
    pub fn gold_ids(&self, line: usize) -> Result<Vec<&str>> {
        match (&self.doc_id, &self.doc_ids) {
            (Some(id), None) => Ok(vec![id.as_str()]),
            (None, Some(ids)) if ids.is_empty() => {
                Err(CoreError::Data(format!("queries line {line}: doc_ids is empty (name at least one document)")))
            }
            (None, Some(ids)) => Ok(ids.iter().map(String::as_str).collect()),
            (Some(_), Some(_)) => {
                Err(CoreError::Data(format!("queries line {line}: give doc_id or doc_ids, not both")))
            }
            (None, None) => Err(CoreError::Data(format!("queries line {line}: no doc_id or doc_ids"))),
        }
    }
}

/// Parses a queries/pairs file and resolves every gold id against the corpus (a document cut
/// into passages is gold in every passage: a hit is any of them). Every line must have a
/// non-empty query and gold documents that are all in the corpus.
pub fn parse_queries(text: &str, corpus: &Corpus) -> Result<Vec<LabelledQuery>> {
    let lines = parse_query_lines(text)?;
    if lines.is_empty() {
        return Err(CoreError::NoQueries);
    }
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.into_iter().enumerate() {
        let line = i + 1;
        let mut gold = Vec::new();
        for id in l.gold_ids(line)? {
            let passages = corpus.passages_of(id);
            if passages.is_empty() {
                return Err(CoreError::Data(format!("queries line {line}: doc_id {id:?} is not in the corpus")));
            }
            for pos in passages {
                if !gold.contains(&pos) {
                    gold.push(pos);
                }
            }
        }
        if l.query.trim().is_empty() {
            return Err(CoreError::Data(format!("queries line {line}: the query is empty")));
        }
        out.push((l.query, gold));
    }
    Ok(out)
}

/// Training pairs from labelled queries: one `(query, document)` pair per gold document.
pub fn training_pairs(queries: Vec<LabelledQuery>) -> Vec<(String, usize)> {
    queries.into_iter().flat_map(|(q, gold)| gold.into_iter().map(move |g| (q.clone(), g))).collect()
}

fn parse_jsonl<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(line).map_err(|e| CoreError::Data(format!("{what} line {}: {e}", i + 1)))?;
        out.push(item);
    }
    Ok(out)
}

/// Serialises items as JSON lines.
pub fn to_jsonl<T: Serialize>(items: &[T]) -> String {
    let mut s = String::new();
    for it in items {
        s.push_str(&serde_json::to_string(it).expect("plain structs always serialise"));
        s.push('\n');
    }
    s
}

/// A seeded subset of `n` documents that contains every document in `must` (ids), and the
/// queries that keep at least one gold document in it (their gold lists cut to the subset).
pub fn subset(
    corpus: &Corpus,
    queries: &[QueryLine],
    n: usize,
    must: &[String],
    seed: u64,
) -> Result<(Corpus, Vec<QueryLine>)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut keep: Vec<usize> = Vec::new();
    for id in must {
        let pos =
            corpus.position(id).ok_or_else(|| CoreError::Data(format!("gold document {id:?} is not in the corpus")))?;
        if !keep.contains(&pos) {
            keep.push(pos);
        }
    }
    if keep.len() > n {
        return Err(CoreError::Data(format!(
            "{} gold documents do not fit in a subset of {n}: ask for at least {} documents",
            keep.len(),
            keep.len()
        )));
    }
    let mut order: Vec<usize> = (0..corpus.len()).filter(|i| !keep.contains(i)).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let others = n.max(1) - keep.len().min(n.max(1));
    keep.extend(order.into_iter().take(others));
    keep.sort_unstable();
    let docs: Vec<Document> = keep.iter().map(|&i| corpus.docs[i].clone()).collect();
    let sub = Corpus::new(docs)?;
    let mut qs = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let gold: Vec<String> =
            q.gold_ids(i + 1)?.into_iter().filter(|id| sub.position(id).is_some()).map(str::to_string).collect();
        match gold.len() {
            0 => {}
            _ if q.doc_id.is_some() => qs.push(q.clone()),
            _ => qs.push(QueryLine { query: q.query.clone(), doc_id: None, doc_ids: Some(gold) }),
        }
    }
    Ok((sub, qs))
}

/// Parses a queries/pairs file without resolving ids.
pub fn parse_query_lines(text: &str) -> Result<Vec<QueryLine>> {
    parse_jsonl(text, "queries")
}

/// Splits query lines into (train, test) with a seeded shuffle: about `test_fraction` of the
/// distinct query texts go to test (at least one, and at least one stays for training), the rest
/// to train; lines with the same text (ignoring case and surrounding spaces) always land on the
/// same side, so no test query is trained on. Each part keeps the file's order.
pub fn split_queries(lines: &[QueryLine], test_fraction: f64, seed: u64) -> Result<(Vec<QueryLine>, Vec<QueryLine>)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(CoreError::Data(format!("the test fraction must be in (0, 1), got {test_fraction}")));
    }
    let key = |q: &QueryLine| q.query.trim().to_lowercase();
    let mut texts: Vec<String> = lines.iter().map(key).collect();
    texts.sort_unstable();
    texts.dedup();
    if texts.len() < 2 {
        return Err(CoreError::Data(format!(
            "splitting needs at least two distinct queries, the file has {}",
            texts.len()
        )));
    }
    texts.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n_test = ((texts.len() as f64 * test_fraction).round() as usize).clamp(1, texts.len() - 1);
    let test: std::collections::HashSet<&String> = texts[..n_test].iter().collect();
    let (test_lines, train_lines): (Vec<QueryLine>, Vec<QueryLine>) =
        lines.iter().cloned().partition(|q| test.contains(&key(q)));
    Ok((train_lines, test_lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(q: &str, d: &str) -> QueryLine {
        QueryLine { query: q.into(), doc_id: Some(d.into()), doc_ids: None }
    }

    #[test]
    fn split_is_seeded_disjoint_by_text_and_complete() {
        let mut lines: Vec<QueryLine> = (0..20).map(|i| line(&format!("question {i}"), "a")).collect();
        lines.push(line("  Question 3 ", "b")); // the same text as line 3: must share its side
        let (train, test) = split_queries(&lines, 0.25, 7).unwrap();
        assert_eq!(train.len() + test.len(), lines.len());
        let norm = |q: &QueryLine| q.query.trim().to_lowercase();
        let test_texts: std::collections::HashSet<String> = test.iter().map(norm).collect();
        assert!(train.iter().all(|q| !test_texts.contains(&norm(q))), "a test query is in train");
        assert_eq!(test_texts.len(), 5, "25 % of 20 distinct texts");
        assert_eq!(split_queries(&lines, 0.25, 7).unwrap(), (train.clone(), test.clone()));
        assert_ne!(split_queries(&lines, 0.25, 8).unwrap().1, test);
        assert!(split_queries(&lines, 0.0, 7).is_err());
        assert!(split_queries(&lines, 1.0, 7).is_err());
        assert!(split_queries(&lines[..1], 0.5, 7).is_err());
        // Two texts: one each way, whatever the fraction.
        let (a, b) = split_queries(&lines[..2], 0.01, 1).unwrap();
        assert_eq!((a.len(), b.len()), (1, 1));
    }

    #[test]
    fn a_chunked_document_is_gold_in_every_passage() {
        let doc = |id: &str| Document { id: id.into(), title: String::new(), text: format!("text of {id}") };
        let corpus = Corpus::new(vec![doc("a"), doc("b"), doc("a#2"), doc("c#x"), doc("a#3")]).unwrap();
        assert_eq!(corpus.passages_of("a"), vec![0, 2, 4]);
        assert_eq!(corpus.passages_of("b"), vec![1]);
        // `#x` is not a passage number: `c#x` is a document of its own.
        assert_eq!(corpus.passages_of("c#x"), vec![3]);
        assert!(corpus.passages_of("c").is_empty());
        let q = parse_queries(
            "{\"query\":\"q1\",\"doc_ids\":[\"a\",\"b\"]}\n{\"query\":\"q2\",\"doc_id\":\"a#2\"}\n",
            &corpus,
        )
        .unwrap();
        assert_eq!(q, vec![("q1".to_string(), vec![0, 2, 4, 1]), ("q2".to_string(), vec![2])]);
        let e = parse_queries("{\"query\":\"q\",\"doc_id\":\"c\"}\n", &corpus).unwrap_err().to_string();
        assert!(e.contains("\"c\" is not in the corpus"), "{e}");
    }
}
