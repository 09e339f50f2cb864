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
        if self.title.trim().is_empty() {
            self.text.clone()
        } else {
            format!("{}. {}", self.title, self.text)
        }
    }
}

/// A query labelled with the id of the document that answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryPair {
    pub query: String,
    pub doc_id: String,
}

/// Documents with an id → position index.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub docs: Vec<Document>,
    index: HashMap<String, usize>,
}

impl Corpus {
    /// Builds a corpus, refusing an empty one and duplicate or empty ids.
    pub fn new(docs: Vec<Document>) -> Result<Self> {
        if docs.is_empty() {
            return Err(CoreError::Data("the corpus has no documents".into()));
        }
        let mut index = HashMap::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
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
        Ok(Self { docs, index })
    }

    /// Parses `corpus.jsonl` text.
    pub fn from_jsonl(text: &str) -> Result<Self> {
        Self::new(parse_jsonl(text, "corpus")?)
    }

    /// Position of a document id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
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

/// Parses a queries/pairs file and resolves every `doc_id` against the corpus.
pub fn parse_queries(text: &str, corpus: &Corpus) -> Result<Vec<(String, usize)>> {
    let pairs: Vec<QueryPair> = parse_jsonl(text, "queries")?;
    if pairs.is_empty() {
        return Err(CoreError::Data("the queries file has no queries".into()));
    }
    pairs
        .into_iter()
        .enumerate()
        .map(|(i, p)| match corpus.position(&p.doc_id) {
            Some(pos) if !p.query.trim().is_empty() => Ok((p.query, pos)),
            Some(_) => Err(CoreError::Data(format!("queries line {}: the query is empty", i + 1))),
            None => Err(CoreError::Data(format!(
                "queries line {}: doc_id {:?} is not in the corpus",
                i + 1,
                p.doc_id
            ))),
        })
        .collect()
}

fn parse_jsonl<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(line)
            .map_err(|e| CoreError::Data(format!("{what} line {}: {e}", i + 1)))?;
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

/// A random subset of `n` documents (seeded) and the queries whose gold document is in it.
pub fn subset(corpus: &Corpus, queries: &[QueryPair], n: usize, seed: u64) -> Result<(Corpus, Vec<QueryPair>)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..corpus.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut keep: Vec<usize> = order.into_iter().take(n.max(1)).collect();
    keep.sort_unstable();
    let docs: Vec<Document> = keep.iter().map(|&i| corpus.docs[i].clone()).collect();
    let sub = Corpus::new(docs)?;
    let qs = queries.iter().filter(|q| sub.position(&q.doc_id).is_some()).cloned().collect();
    Ok((sub, qs))
}

/// Parses a queries/pairs file without resolving ids.
pub fn parse_query_pairs(text: &str) -> Result<Vec<QueryPair>> {
    parse_jsonl(text, "queries")
}
