//! The person's documents: text checks and chunking on the way in ([`prepare_documents`]), adding
//! them to the state with their frozen embeddings and category-question keys, the list the page
//! shows, and removal of a document with everything derived from it.

use super::*;

/// One document as the user added it (after conversion to text and chunking).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDoc {
    pub id: String,
    pub title: String,
    pub text: String,
    /// When it was added, in milliseconds since the Unix epoch (absent in stores written before
    /// dates were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_ms: Option<f64>,
}

/// A document as the page hands it in.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewDoc {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub text: String,
}

/// Turns raw documents into stored passages with core's one reading of documents
/// ([`fedsearch_core::document::prepare_documents`]: conversion, checks, chunking into
/// [`CHUNK_WORDS`]-word passages, content-hash ids). Refuses the whole batch, naming up to five
/// refused documents, when one is empty, binary or too large.
pub fn prepare_documents(docs: Vec<NewDoc>, kind: TextKind) -> Result<Vec<StoredDoc>> {
    let raw = docs.into_iter().map(|d| RawDocument { id: d.id, title: d.title, text: d.text });
    match document::prepare_documents(raw, kind, CHUNK_WORDS) {
        Ok(passages) => Ok(passages
            .into_iter()
            .map(|p| StoredDoc { id: p.id, title: p.title, text: p.text, added_ms: None })
            .collect()),
        Err(mut refused) => {
            let more = if refused.len() > 5 { format!(" (and {} more)", refused.len() - 5) } else { String::new() };
            refused.truncate(5);
            err(format!("nothing was added: {}{more}", refused.join("; ")))
        }
    }
}

/// One document in [`State::document_list`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentSummary {
    pub id: String,
    pub title: String,
    pub passages: usize,
    pub words: usize,
    /// When it was added (ms since the Unix epoch), if known.
    #[serde(rename = "addedMs")]
    pub added_ms: Option<f64>,
}

impl State {
    /// Adds documents (skipping ids already present), embeds the new ones with the frozen
    /// encoder, extends the head (zeros, or the global column for a federated document) and
    /// rebuilds the index. Returns how many were added.
    pub async fn add_documents(
        &mut self,
        encoder: &SentenceEncoder,
        docs: Vec<StoredDoc>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<usize> {
        let mut seen: std::collections::HashSet<String> = self.docs.iter().map(|d| d.id.clone()).collect();
        let now_ms =
            web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).map_or(0.0, |t| t.as_millis() as f64);
        let new: Vec<StoredDoc> = docs
            .into_iter()
            .filter(|d| seen.insert(d.id.clone()))
            .map(|d| StoredDoc { added_ms: d.added_ms.or(Some(now_ms)), ..d })
            .collect();
        if new.is_empty() {
            return Ok(0);
        }
        // The documents and their category questions in one pass (one progress bar).
        let mut texts: Vec<String> = new.iter().map(full_text).collect();
        let mut question_targets = Vec::new();
        for (i, doc) in new.iter().enumerate() {
            for q in category_questions_of(&doc.text, QUESTION_MAX_WORDS) {
                texts.push(q);
                question_targets.push(i);
            }
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut emb = encoder.embed(&refs, None, 16, progress).await?;
        let d = self.dim();
        let question_emb = emb.split_off(new.len() * d);
        let keys =
            keys_towards(&emb, &[QuerySet { emb: &question_emb, targets: &question_targets, mix: QUESTION_MIX }], d);
        let zero = vec![(vec![0.0; d], 0.0); new.len()];
        self.model.push_columns(&zero);
        self.base.push_columns(&zero);
        self.docs.extend(new.iter().cloned());
        self.doc_emb.extend(emb);
        self.key_emb.extend(keys);
        self.rebuild_index();
        Ok(new.len())
    }

    /// The documents as added: one entry per document id (its passages `id#2`, `id#3`, … folded
    /// in), with title, passage count and words, in the order they were added.
    pub fn document_list(&self) -> Vec<DocumentSummary> {
        let mut out: Vec<DocumentSummary> = Vec::new();
        let mut pos: HashMap<&str, usize> = HashMap::new();
        for d in &self.docs {
            let base = document_id(&d.id);
            let words = d.text.split_whitespace().count();
            match pos.get(base) {
                Some(&i) => {
                    out[i].passages += 1;
                    out[i].words += words;
                }
                None => {
                    pos.insert(base, out.len());
                    out.push(DocumentSummary {
                        id: base.to_string(),
                        title: d.title.clone(),
                        passages: 1,
                        words,
                        added_ms: d.added_ms,
                    });
                }
            }
        }
        out
    }

    /// Removes a document — every passage of it (`id`, `id#2`, …) — with its embedding, its head
    /// columns (trained and base) and the clicks on it; the search index is rebuilt. Returns how
    /// many passages were removed (0: no such document).
    pub fn remove_document(&mut self, id: &str) -> usize {
        let keep: Vec<bool> = self.docs.iter().map(|d| document_id(&d.id) != id).collect();
        let removed = keep.iter().filter(|k| !**k).count();
        if removed == 0 {
            return 0;
        }
        let d = self.dim();
        let kept_rows = |rows: &[f32]| -> Vec<f32> {
            rows.chunks_exact(d).zip(&keep).filter(|(_, k)| **k).flat_map(|(row, _)| row.iter().copied()).collect()
        };
        self.doc_emb = kept_rows(&self.doc_emb);
        self.key_emb = kept_rows(&self.key_emb);
        self.model.retain_columns(&keep);
        self.base.retain_columns(&keep);
        let mut k = keep.iter();
        self.docs.retain(|_| *k.next().unwrap_or(&true));
        self.meta.clicks.retain(|c| document_id(&c.doc_id) != id);
        self.rebuild_index();
        removed
    }
}

pub(super) fn full_text(d: &StoredDoc) -> String {
    Document { id: d.id.clone(), title: d.title.clone(), text: d.text.clone() }.full_text()
}
