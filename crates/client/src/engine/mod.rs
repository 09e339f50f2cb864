//! The client's state and everything it does with it, independent of the browser: documents,
//! their frozen embeddings and search index, the locally trained adapter + head (kept on the
//! host), clicks, the global model it started from, privacy accounting, and building the
//! privatized update. The wasm layer (`wasm.rs`) adds fetch, IndexedDB and JS types on top.
//! Everything here runs natively too, so it is unit-tested with the tiny model.
//! By concern: `documents` (checks, chunking, add, list, remove), `contribute` (the update and
//! its accounting); this file holds the state, its persistence, the global model, training and
//! search. The host-side model is core's (`fedsearch_core::host::HostModel`).

use fedsearch_core::CoreError;
use fedsearch_core::adapter::SoftEmbeddingAdapter;
use fedsearch_core::checkpoint::write_safetensors;
use fedsearch_core::data::{Corpus, Document};
use fedsearch_core::document::{self, CHUNK_WORDS, RawDocument, TextKind, document_id, snippet};
use fedsearch_core::head::{QUESTION_MIX, QuerySet, keys_towards};
use fedsearch_core::index::{HybridWeights, SearchIndex};
use fedsearch_core::model::SentenceEncoder;
use fedsearch_core::pseudo::{
    PseudoQueryConfig, QUESTION_MAX_WORDS, add_clicks, category_questions_of, pseudo_queries,
};
use fedsearch_core::search::top_k;
use fedsearch_core::train::{CLICK_WEIGHT, TrainConfig, TrainInputs, TrainMode, TrainProgress, TrainReport, train};
use fedsearch_privacy::{NoiseRng, RdpAccountant};
use fedsearch_protocol::{
    ADAPTER_BIAS, ADAPTER_WEIGHT, DpParams, Encoding, FederationMode, GlobalModel, HEAD_BIAS, HEAD_WEIGHT, NamedTensor,
    Update, UpdateHeader, UpdatePrivacy, encode_update,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

mod contribute;
mod documents;

pub use contribute::{
    ContributionReport, build_update, contribution_deltas, record_contribution, record_secure_contribution,
};
use documents::full_text;
pub use documents::{DocumentSummary, NewDoc, StoredDoc, prepare_documents};
pub use fedsearch_core::host::HostModel;

/// What kind of failure a [`ClientError`] is: callers (and the page, as the JS error's `code`)
/// branch on this, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Input or state the person can fix (the message says how).
    Invalid,
    /// Training diverged (the loss stopped being finite).
    Diverged,
    /// Training was cancelled.
    Cancelled,
    /// Any other failure of the model or its backend.
    Core,
}

impl ErrorCode {
    /// The stable name carried to JS.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::Diverged => "diverged",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Core => "core",
        }
    }
}

/// Errors of the client, each with a message a person can act on and a code to branch on.
#[derive(Debug)]
pub struct ClientError {
    pub message: String,
    pub code: ErrorCode,
}

impl ClientError {
    /// An [`ErrorCode::Invalid`] error.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: ErrorCode::Invalid }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {}

impl From<CoreError> for ClientError {
    fn from(e: CoreError) -> Self {
        let code = match e {
            CoreError::Diverged { .. } => ErrorCode::Diverged,
            CoreError::Cancelled => ErrorCode::Cancelled,
            _ => ErrorCode::Core,
        };
        ClientError { message: e.to_string(), code }
    }
}

/// Result alias of the client.
pub type Result<T> = std::result::Result<T, ClientError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(ClientError::new(msg))
}

/// One recorded click: the query and the document the user chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Click {
    pub query: String,
    pub doc_id: String,
}

/// The global model the local model started from (what a delta is measured against).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalMeta {
    pub federation_id: String,
    pub version: u64,
    pub mode: FederationMode,
    /// The federation's head columns (shared mode): document ids in column order.
    pub doc_ids: Vec<String>,
    #[serde(default)]
    pub n_docs: usize,
}

/// What the worker's `GET /v1/federations/{id}` says: the protocol's one definition.
pub use fedsearch_protocol::{DpRequirement as FederationDp, FederationInfo};

/// Privacy spent and traffic sent so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrivacyState {
    pub accountant: RdpAccountant,
    pub delta: Option<f64>,
    pub contributions: u64,
    pub rounds: Vec<u64>,
    pub bytes_sent: u64,
    pub last_clip: Option<f32>,
    pub last_noise_multiplier: Option<f32>,
    /// One entry per secure round taken part in (distributed DP: the Skellam noise of the sum).
    #[serde(default)]
    pub secure_rounds: Vec<fedsearch_protocol::SkellamParams>,
}

impl PrivacyState {
    /// ε at the federation's δ after everything contributed so far (0 before any).
    pub fn epsilon(&self) -> f64 {
        match self.delta {
            Some(d) => self.accountant.epsilon_with_skellam(&self.secure_rounds, d).unwrap_or(f64::INFINITY),
            None => 0.0,
        }
    }

    /// ε if this device took part in one more secure round with `params` (at δ `delta`).
    pub fn epsilon_after_secure(&self, params: &fedsearch_protocol::SkellamParams, delta: f64) -> Result<f64> {
        if params.mu <= 0.0 {
            return Ok(self.epsilon());
        }
        let mut rounds = self.secure_rounds.clone();
        rounds.push(*params);
        self.accountant
            .epsilon_with_skellam(&rounds, delta)
            .map_err(|e| ClientError::new(format!("privacy accounting: {e}")))
    }

    /// ε if one more contribution with `sigma` (at δ `delta`) were made.
    pub fn epsilon_after(&self, sigma: f32, delta: f64) -> Result<f64> {
        let mut a = self.accountant.clone();
        a.step(f64::from(sigma), 1.0, 1).map_err(|e| ClientError::new(format!("privacy accounting: {e}")))?;
        a.epsilon_with_skellam(&self.secure_rounds, delta)
            .map_err(|e| ClientError::new(format!("privacy accounting: {e}")))
    }
}

/// Enrolment with a worker (the worker's enrolment reply, persisted as it came).
pub use fedsearch_protocol::EnrollReply as Enrolment;

/// The small, JSON-persisted part of the state (documents, embeddings and weights are
/// stored as separate blobs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    pub clicks: Vec<Click>,
    pub global: Option<GlobalMeta>,
    pub privacy: PrivacyState,
    pub enrolment: Option<Enrolment>,
    pub trained_steps: u64,
    /// Width of the model the embeddings were computed with (refuses a mismatched store).
    pub dim: usize,
}

/// Search methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Car,
    Mips,
    Hybrid,
    Bm25,
}

impl Method {
    /// Parses `"car"`, `"mips"`, `"hybrid"` or `"bm25"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "car" => Ok(Self::Car),
            "mips" => Ok(Self::Mips),
            "hybrid" | "" => Ok(Self::Hybrid),
            "bm25" => Ok(Self::Bm25),
            other => err(format!("unknown search method {other:?}: use car, mips, hybrid or bm25")),
        }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: String,
    pub title: String,
    pub score: f32,
    pub snippet: String,
}

/// Training options (from the page): the mode, and whatever the page overrides of core's recipe
/// for it ([`TrainConfig::recipe`]; absent fields keep the recipe's value).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TrainOptions {
    /// `"head"` (default) or `"adapter+head"`.
    pub mode: Option<TrainMode>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub head_lr: Option<f64>,
    pub adapter_lr: Option<f64>,
    pub max_steps: Option<usize>,
    pub seed: Option<u64>,
    /// How many times each recorded click counts as a training pair.
    pub click_weight: Option<usize>,
    pub holdout_fraction: Option<f64>,
    /// λ of the L2 pull of the head's residual back to its keys (`State::key_emb`).
    pub head_pull: Option<f64>,
}

impl TrainOptions {
    /// The mode ("head" when not given).
    pub fn mode(&self) -> TrainMode {
        self.mode.unwrap_or(TrainMode::Head)
    }

    /// Core's recipe for the mode with these overrides; refuses values training cannot use.
    pub fn config(&self) -> Result<TrainConfig> {
        let r = TrainConfig::recipe(self.mode());
        let cfg = TrainConfig {
            epochs: self.epochs.unwrap_or(r.epochs),
            batch_size: self.batch_size.unwrap_or(r.batch_size),
            head_lr: self.head_lr.unwrap_or(r.head_lr),
            adapter_lr: self.adapter_lr.unwrap_or(r.adapter_lr),
            holdout_fraction: self.holdout_fraction.unwrap_or(r.holdout_fraction),
            seed: self.seed.unwrap_or(r.seed),
            max_steps: self.max_steps.or(r.max_steps),
            pull_to_keys: self.head_pull.unwrap_or(r.pull_to_keys),
            ..r
        };
        if cfg.epochs == 0 || cfg.batch_size == 0 {
            return err("epochs and batchSize must be at least 1");
        }
        if !(cfg.pull_to_keys.is_finite() && cfg.pull_to_keys >= 0.0) {
            return err(format!("headPull must be a number ≥ 0, got {}", cfg.pull_to_keys));
        }
        for (name, lr) in [("headLr", cfg.head_lr), ("adapterLr", cfg.adapter_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                return err(format!("{name} must be a number > 0, got {lr}"));
            }
        }
        if !(0.0..1.0).contains(&cfg.holdout_fraction) {
            return err(format!("holdoutFraction must be in [0, 1), got {}", cfg.holdout_fraction));
        }
        Ok(cfg)
    }

    /// How many times a click counts ([`CLICK_WEIGHT`] when not given).
    pub fn click_weight(&self) -> usize {
        self.click_weight.unwrap_or(CLICK_WEIGHT)
    }
}

/// Everything the client holds, except the encoder.
pub struct State {
    pub docs: Vec<StoredDoc>,
    /// Frozen-encoder embeddings `[n, d]` of every document's full text (MIPS, BM25's twin).
    pub doc_emb: Vec<f32>,
    /// The CaR head's fixed keys `[n, d]`: each document embedding moved towards its category
    /// questions (`fedsearch_core::pseudo::category_questions_of`, mix `QUESTION_MIX`; the
    /// document embedding itself when it has none).
    pub key_emb: Vec<f32>,
    pub index: SearchIndex,
    pub model: HostModel,
    /// The weights the local model started from (delta = model − base).
    pub base: HostModel,
    pub meta: Meta,
    adapter_cache: Option<SoftEmbeddingAdapter>,
}

impl State {
    /// An empty state for an encoder of width `dim`.
    pub fn empty(dim: usize) -> Self {
        Self {
            docs: Vec::new(),
            doc_emb: Vec::new(),
            key_emb: Vec::new(),
            index: SearchIndex::from_parts(Vec::new(), Vec::new(), dim, &[]),
            model: HostModel::initial(dim, 0),
            base: HostModel::initial(dim, 0),
            meta: Meta { dim, ..Default::default() },
            adapter_cache: None,
        }
    }

    /// Width of the model.
    pub fn dim(&self) -> usize {
        self.model.dim
    }

    /// Restores a state from its persisted parts; `None` parts mean "nothing stored". `emb` is
    /// what [`State::emb_bytes`] wrote: the document embeddings, then the keys (a state saved
    /// before keys had their own rows holds the embeddings only: they are its keys).
    pub fn restore(
        dim: usize,
        docs: Vec<StoredDoc>,
        mut doc_emb: Vec<f32>,
        weights: Option<&[u8]>,
        meta: Option<Meta>,
    ) -> Result<Self> {
        let mut s = Self::empty(dim);
        if let Some(meta) = meta {
            if meta.dim != 0 && meta.dim != dim {
                return err(format!(
                    "the stored data was made with a model of width {} but this model's is {dim}: \
                     delete the local data or use the same model",
                    meta.dim
                ));
            }
            s.meta = meta;
            s.meta.dim = dim;
        }
        let rows = docs.len() * dim;
        let key_emb = if doc_emb.len() == 2 * rows {
            doc_emb.split_off(rows)
        } else if doc_emb.len() == rows {
            doc_emb.clone()
        } else {
            return err("the stored embeddings do not match the stored documents: delete the local data");
        };
        if let Some(bytes) = weights {
            let mut map = read_safetensors(bytes)?;
            let model = HostModel::from_tensors(&mut map, "");
            let base = HostModel::from_tensors(&mut map, "base.");
            match (model, base) {
                (Some(m), Some(b)) if m.dim == dim && m.n_docs() == docs.len() && b.n_docs() == docs.len() => {
                    s.model = m;
                    s.base = b;
                }
                _ => return err("the stored model does not match the stored documents: delete the local data"),
            }
        } else {
            s.model = HostModel::initial(dim, docs.len());
            s.base = s.model.clone();
        }
        s.docs = docs;
        s.doc_emb = doc_emb;
        s.key_emb = key_emb;
        s.rebuild_index();
        Ok(s)
    }

    /// The weights (model and base) as safetensors bytes.
    pub fn weights_bytes(&self) -> Result<Vec<u8>> {
        let mut t = self.model.tensors("");
        t.extend(self.base.tensors("base."));
        Ok(write_safetensors(&t, HashMap::new())?)
    }

    /// Embeddings, then keys, as little-endian bytes.
    pub fn emb_bytes(&self) -> Vec<u8> {
        self.doc_emb.iter().chain(&self.key_emb).flat_map(|v| v.to_le_bytes()).collect()
    }

    fn rebuild_index(&mut self) {
        let texts: Vec<String> = self.docs.iter().map(full_text).collect();
        let ids = self.docs.iter().map(|d| d.id.clone()).collect();
        self.index = SearchIndex::from_parts(ids, self.doc_emb.clone(), self.dim(), &texts);
    }

    /// Position of each local document in the federation's head (shared mode).
    fn federated_columns(&self) -> Vec<Option<usize>> {
        let Some(g) = &self.meta.global else { return vec![None; self.docs.len()] };
        if g.mode != FederationMode::Shared {
            return vec![None; self.docs.len()];
        }
        if g.doc_ids.is_empty() {
            // A federation without doc ids: columns are positions in the shared corpus.
            return (0..self.docs.len()).map(|i| (i < g.n_docs).then_some(i)).collect();
        }
        let pos: HashMap<&str, usize> = g.doc_ids.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
        self.docs.iter().map(|d| pos.get(d.id.as_str()).copied()).collect()
    }

    /// Deletes everything local (documents, clicks, training; the enrolment and privacy
    /// accounting too when `everything`).
    pub fn clear(&mut self, everything: bool) {
        let meta = std::mem::take(&mut self.meta);
        let dim = self.dim();
        *self = Self::empty(dim);
        if !everything {
            self.meta.privacy = meta.privacy;
            self.meta.enrolment = meta.enrolment;
            self.meta.global = meta.global;
        }
    }

    /// Applies a global model: the adapter (always) and the federated head columns (shared
    /// mode) are replaced; local-only columns keep their values. The result becomes the base
    /// later deltas are measured against.
    pub fn apply_global(&mut self, g: &GlobalModel) -> Result<()> {
        let d = self.dim();
        let get = |name: &str| g.tensor(name);
        let (Some(aw), Some(ab)) = (get(ADAPTER_WEIGHT), get(ADAPTER_BIAS)) else {
            return err("the global model has no adapter tensors");
        };
        if aw.shape != [d as u32, d as u32] || ab.data.len() != d {
            return err(format!(
                "the federation's adapter is {:?} but this model's width is {d}: the federation uses another model",
                aw.shape
            ));
        }
        let n_fed = get(HEAD_BIAS).map_or(0, |t| t.data.len());
        self.meta.global = Some(GlobalMeta {
            federation_id: g.federation_id.clone(),
            version: g.version,
            mode: g.mode,
            doc_ids: g.doc_ids.clone().unwrap_or_default(),
            n_docs: n_fed,
        });
        self.model.adapter_w = aw.data.clone();
        self.model.adapter_b = ab.data.clone();
        if g.mode == FederationMode::Shared
            && let (Some(hw), Some(hb)) = (get(HEAD_WEIGHT), get(HEAD_BIAS))
        {
            if hw.shape != [d as u32, n_fed as u32] {
                return err(format!("the global head has shape {:?}, expected [{d}, {n_fed}]", hw.shape));
            }
            for (i, col) in self.federated_columns().into_iter().enumerate() {
                if let Some(j) = col {
                    let c: Vec<f32> = (0..d).map(|r| hw.data[r * n_fed + j]).collect();
                    self.model.set_column(i, &c, hb.data[j]);
                }
            }
        }
        self.base = self.model.clone();
        self.adapter_cache = None;
        Ok(())
    }

    /// Marks a never-synced state as starting from the federation's version 0, which is the
    /// known initial model (identity adapter, zero head): the local weights need no reset, so
    /// training done before the first sync still counts. Later versions must be downloaded.
    pub fn adopt_initial(&mut self, info: &FederationInfo) -> Result<()> {
        if self.meta.global.is_some() {
            return Ok(());
        }
        if info.current_version != 0 {
            return err(format!(
                "the federation is at version {}: download the global model (syncGlobal), train, then contribute",
                info.current_version
            ));
        }
        if self.base != HostModel::initial(self.dim(), self.docs.len()) {
            return err(
                "the local model did not start from the initial model: download the global model (syncGlobal) and train again",
            );
        }
        self.meta.global = Some(GlobalMeta {
            federation_id: info.id.clone(),
            version: 0,
            mode: info.mode,
            doc_ids: info.doc_ids.clone().unwrap_or_default(),
            n_docs: info.n_docs as usize,
        });
        Ok(())
    }

    /// Records a click (query → document); it becomes a training pair.
    pub fn record_click(&mut self, query: &str, doc_id: &str) -> Result<()> {
        if query.trim().is_empty() {
            return err("the query is empty");
        }
        if !self.docs.iter().any(|d| d.id == doc_id) {
            return err(format!("document {doc_id:?} is not in the local index"));
        }
        self.meta.clicks.push(Click { query: query.trim().to_string(), doc_id: doc_id.to_string() });
        Ok(())
    }

    /// Training pairs: pseudo-queries of every document plus the recorded clicks.
    pub fn training_pairs(&self, opts: &TrainOptions) -> Result<(Vec<String>, Vec<usize>)> {
        let docs: Vec<Document> = self
            .docs
            .iter()
            .map(|d| Document { id: d.id.clone(), title: d.title.clone(), text: d.text.clone() })
            .collect();
        let corpus = Corpus::new(docs)?;
        let cfg = PseudoQueryConfig { seed: opts.seed.unwrap_or(TrainConfig::default().seed), ..Default::default() };
        let mut pairs = pseudo_queries(&corpus, &cfg);
        let clicks: Vec<(String, usize)> =
            self.meta.clicks.iter().filter_map(|c| corpus.position(&c.doc_id).map(|p| (c.query.clone(), p))).collect();
        add_clicks(&mut pairs, &clicks, opts.click_weight());
        Ok(pairs.into_iter().unzip())
    }

    /// Trains the local model (head only on cached features, or adapter + head end to end)
    /// with core's training loop. `progress` returns false to cancel.
    pub async fn train(
        &mut self,
        encoder: &SentenceEncoder,
        opts: &TrainOptions,
        progress: &mut dyn FnMut(&TrainProgress) -> bool,
    ) -> Result<TrainReport> {
        if self.docs.is_empty() {
            return err("add documents before training");
        }
        let (queries, targets) = self.training_pairs(opts)?;
        let cfg = opts.config()?;
        let cfg = if opts.batch_size.is_some() { cfg } else { cfg.for_examples(queries.len()) };
        let device = encoder.device().clone();
        let retriever = self.model.to_retriever(Some(&self.key_emb), &device);
        let (trained, report) = match opts.mode() {
            TrainMode::Head => {
                let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
                let adapter = self.adapter(&device);
                let features = encoder.embed(&refs, Some(&adapter), 32, &mut |_, _| {}).await?;
                train(retriever, TrainInputs::Cached(&features), &targets, &cfg, &device, progress).await?
            }
            TrainMode::AdapterHead => {
                let inputs = TrainInputs::Texts { encoder, texts: &queries };
                train(retriever, inputs, &targets, &cfg, &device, progress).await?
            }
        };
        self.model = HostModel::from_retriever(&trained).await?;
        self.adapter_cache = None;
        self.meta.trained_steps += report.steps as u64;
        Ok(report)
    }

    fn adapter(&mut self, device: &burn::prelude::Device) -> SoftEmbeddingAdapter {
        self.adapter_cache
            .get_or_insert_with(|| {
                SoftEmbeddingAdapter::from_values(self.model.adapter_w.clone(), self.model.adapter_b.clone(), device)
            })
            .clone()
    }

    /// The top `k` documents for `query` by `method`, computed locally.
    pub async fn search(
        &mut self,
        encoder: &SentenceEncoder,
        query: &str,
        k: usize,
        method: Method,
    ) -> Result<Vec<Hit>> {
        if self.docs.is_empty() || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let device = encoder.device().clone();
        let scores = match method {
            Method::Bm25 => self.index.bm25_scores(query),
            Method::Mips => self.index.mips_scores(&embed_one(encoder, query, None).await?),
            Method::Car => {
                let q = embed_one(encoder, query, Some(self.adapter(&device))).await?;
                self.model.logits(&q, &self.key_emb)
            }
            Method::Hybrid => {
                let q_mips = embed_one(encoder, query, None).await?;
                let q_car = embed_one(encoder, query, Some(self.adapter(&device))).await?;
                let car = self.model.logits(&q_car, &self.key_emb);
                self.index.hybrid_scores(&car, &q_mips, query, HybridWeights::default())
            }
        };
        // BM25 has evidence only for documents sharing a word with the query: the rest (score
        // 0) are not results, so a query with no word in common finds nothing.
        let has_evidence = |i: &usize| method != Method::Bm25 || scores[*i] > 0.0;
        Ok(top_k(&scores, k.max(1))
            .into_iter()
            .filter(has_evidence)
            .map(|i| {
                let d = &self.docs[i];
                Hit {
                    id: d.id.clone(),
                    title: d.title.clone(),
                    score: scores[i],
                    snippet: snippet(&d.text, query, 200),
                }
            })
            .collect())
    }
}

async fn embed_one(encoder: &SentenceEncoder, query: &str, adapter: Option<SoftEmbeddingAdapter>) -> Result<Vec<f32>> {
    Ok(encoder.embed(&[query], adapter.as_ref(), 1, &mut |_, _| {}).await?)
}

/// Tensors by name: (shape, row-major values).
type NamedValues = HashMap<String, (Vec<usize>, Vec<f32>)>;

fn read_safetensors(bytes: &[u8]) -> Result<NamedValues> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ClientError::new(format!("the stored model is corrupt ({e}): delete the local data")))?;
    Ok(st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let data = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (name, (v.shape().to_vec(), data))
        })
        .collect())
}

/// Bytes → f32 values (little-endian).
pub fn f32s_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
