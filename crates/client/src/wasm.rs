//! The JavaScript API: `FedsearchClient`. Every async method returns a Promise and rejects
//! with a JS `Error` whose message says what went wrong and what to do.

use crate::engine::{
    self, ContributionReport, Enrolment, FederationInfo, Meta, Method, NewDoc, State, StoredDoc, TrainOptions,
};
use crate::idb::{Kv, bytes_js};
use crate::net;
use burn::prelude::Device;
use fedsearch_core::document::TextKind;
use fedsearch_core::model::{DEFAULT_MAX_LEN, ModelFiles, SentenceEncoder};
use fedsearch_privacy::NoiseRng;
use fedsearch_protocol::{UploadReply, decode_global_model};
use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

fn js_error(msg: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(msg.as_ref()).into()
}

/// A JS `Error` with the client's stable `code` property ("invalid", "diverged", "cancelled",
/// "core") for the page to branch on.
fn coded_error(msg: &str, code: engine::ErrorCode) -> JsValue {
    let e = js_sys::Error::new(msg);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&e, &"code".into(), &code.as_str().into());
    e.into()
}

impl From<engine::ClientError> for JsValue {
    fn from(e: engine::ClientError) -> Self {
        coded_error(&e.message, e.code)
    }
}

/// `secaggClientCost(dim, neighbours)`: one client's part of a secure round in this browser —
/// milliseconds per phase (keys, sealed shares, the masked update, unmasking) and bytes up and
/// down — the same measurement as `fedsearch bench secagg` natively
/// (`fedsearch_protocol::secagg::client_cost`). Runs synchronously: call it from a worker or a
/// benchmark page.
#[wasm_bindgen(js_name = secaggClientCost)]
pub fn secagg_client_cost(dim: usize, neighbours: usize) -> Result<JsValue, JsValue> {
    let now = js_sys::Date::now;
    let cost = fedsearch_protocol::secagg::client_cost(dim, neighbours, &now).map_err(|e| js_error(e.to_string()))?;
    to_js(&cost)
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error(format!("internal: cannot convert the result: {e}")))
}

unsafe extern "C" {
    /// Synthesised by wasm-ld: runs the module's static constructors (the `inventory`
    /// registrations of Burn's CubeCL stack, through `pliron`).
    fn __wasm_call_ctors();
}

/// Runs the static constructors once per instance. That this module calls `__wasm_call_ctors`
/// itself also tells wasm-ld not to link it "command-style": a module that never calls them gets
/// a call at the top of every exported function, so every call from JavaScript (each method,
/// each resolved promise, each callback) ran all of them again: 3.7 % of the tab's CPU in the
/// benchmark's profile; running them once made its head training 1.45× faster
/// (crates/core/PERFORMANCE.md, "The tab against onnxruntime-web").
fn run_static_constructors_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if !DONE.swap(true, Ordering::Relaxed) {
        // SAFETY: wasm-ld's constructor runner takes no arguments; the flag runs it once.
        unsafe { __wasm_call_ctors() }
    }
}

#[wasm_bindgen(start)]
fn start() {
    run_static_constructors_once();
    console_error_panic_hook::set_once();
}

thread_local! {
    /// burn's wgpu runtime can be initialised once per page: later clients reuse the device.
    static WGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
}

/// Tries WebGPU; `Err` says why it is not usable. Reached only through `pick_device`, which
/// has run the static constructors.
async fn webgpu_device() -> Result<Device, String> {
    if let Some(d) = WGPU.with(|w| w.borrow().clone()) {
        return Ok(d);
    }
    let global = js_sys::global();
    let navigator = js_sys::Reflect::get(&global, &"navigator".into()).unwrap_or(JsValue::UNDEFINED);
    let gpu = js_sys::Reflect::get(&navigator, &"gpu".into()).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        return Err("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    let device =
        Device::wgpu_options().init_async().await.map_err(|e| format!("WebGPU initialisation failed: {e:?}"))?;
    // A first kernel and read-back proves the adapter really works.
    let t = burn::prelude::Tensor::<1>::from_floats([1.0, 2.0], &device);
    let v = fedsearch_core::model::read_f32(t.mul_scalar(2.0))
        .await
        .map_err(|e| format!("WebGPU does not compute: {e}"))?;
    if v != [2.0, 4.0] {
        return Err(format!("WebGPU computed {v:?} instead of [2, 4]"));
    }
    WGPU.with(|w| *w.borrow_mut() = Some(device.clone()));
    Ok(device)
}

/// Picks the device for `"webgpu"`, `"cpu"` or `"auto"`; returns it and its name. Every way to
/// a Burn device in the client goes through here, so the static constructors run here too:
/// `start` has run them already, except where a harness skips it (wasm-bindgen-test), and
/// CubeCL's IR needs them on WebGPU.
pub async fn pick_device(backend: &str) -> Result<(Device, &'static str), JsValue> {
    run_static_constructors_once();
    match backend {
        "cpu" => Ok((Device::flex(), "cpu")),
        "webgpu" | "gpu" | "wgpu" => webgpu_device().await.map(|d| (d, "webgpu")).map_err(js_error),
        "auto" | "" => match webgpu_device().await {
            Ok(d) => Ok((d, "webgpu")),
            Err(why) => {
                web_sys::console::info_1(&format!("fedsearch: using the CPU: {why}").into());
                Ok((Device::flex(), "cpu"))
            }
        },
        other => Err(js_error(format!("unknown backend {other:?}: use \"webgpu\", \"cpu\" or \"auto\""))),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateOptions {
    worker_url: String,
    federation: String,
    model_base_url: String,
    backend: Option<String>,
    enroll_token: Option<String>,
    /// IndexedDB database name (default `fedsearch-<federation>`).
    db_name: Option<String>,
    max_len: Option<usize>,
}

struct Inner {
    encoder: SentenceEncoder,
    backend: &'static str,
    state: RefCell<State>,
    kv: Kv,
    worker_url: String,
    federation: String,
    enroll_token: RefCell<Option<String>>,
    cancel: Cell<bool>,
}

impl Inner {
    fn state(&self) -> Result<std::cell::RefMut<'_, State>, JsValue> {
        self.state.try_borrow_mut().map_err(|_| {
            js_error(
                "the client is busy with another operation (training, indexing or contributing): wait for it to finish",
            )
        })
    }

    /// The state for reading (reports, lists); fails while an operation holds it.
    fn state_ref(&self) -> Result<std::cell::Ref<'_, State>, JsValue> {
        self.state.try_borrow().map_err(|_| js_error("the client is busy: try again when the operation ends"))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/federations/{}{path}", self.worker_url.trim_end_matches('/'), self.federation)
    }

    async fn persist(&self, state: &State, what: &[&str]) -> Result<(), JsValue> {
        let mut entries: Vec<(&str, JsValue)> = Vec::new();
        for w in what {
            let v = match *w {
                "docs" => JsValue::from_str(&serde_json::to_string(&state.docs).map_err(|e| js_error(e.to_string()))?),
                "emb" => bytes_js(&state.emb_bytes()),
                "weights" => bytes_js(&state.weights_bytes()?),
                "meta" => JsValue::from_str(&serde_json::to_string(&state.meta).map_err(|e| js_error(e.to_string()))?),
                _ => continue,
            };
            entries.push((w, v));
        }
        self.kv.put_all(&entries).await
    }

    async fn restore(kv: &Kv, dim: usize) -> Result<State, JsValue> {
        let docs: Vec<StoredDoc> = match kv.get_string("docs").await? {
            Some(s) => serde_json::from_str(&s).map_err(|e| js_error(format!("stored documents are corrupt: {e}")))?,
            None => Vec::new(),
        };
        let emb = kv.get_bytes("emb").await?.map(|b| engine::f32s_from_bytes(&b)).unwrap_or_default();
        let weights = kv.get_bytes("weights").await?;
        let meta: Option<Meta> = match kv.get_string("meta").await? {
            Some(s) => Some(serde_json::from_str(&s).map_err(|e| js_error(format!("stored state is corrupt: {e}")))?),
            None => None,
        };
        Ok(State::restore(dim, docs, emb, weights.as_deref(), meta)?)
    }

    async fn federation_info(&self) -> Result<FederationInfo, JsValue> {
        net::get_json(&self.url(""), "reading the federation").await
    }

    async fn enrolment(&self) -> Result<Enrolment, JsValue> {
        if let Some(e) = self.state()?.meta.enrolment.clone() {
            return Ok(e);
        }
        let token = self.enroll_token.borrow().clone().ok_or_else(|| {
            js_error("this device is not enrolled with the federation: pass an enrolment token (enrollToken) or call enroll(token)")
        })?;
        self.enroll(&token).await
    }

    async fn enroll(&self, token: &str) -> Result<Enrolment, JsValue> {
        let e: Enrolment =
            net::post_json(&self.url("/enroll"), &serde_json::json!({ "token": token }), "enrolment").await?;
        let mut st = self.state()?;
        st.meta.enrolment = Some(e.clone());
        self.persist(&st, &["meta"]).await?;
        Ok(e)
    }

    async fn sync(&self) -> Result<SyncResult, JsValue> {
        let bytes = net::get_bytes(&self.url("/model"), "downloading the global model").await?;
        let g = decode_global_model(&bytes).map_err(|e| js_error(format!("the global model is undecodable: {e}")))?;
        let mut st = self.state()?;
        let previous = st.meta.global.as_ref().map(|g| g.version);
        st.apply_global(&g)?;
        self.persist(&st, &["weights", "meta"]).await?;
        Ok(SyncResult {
            version: g.version,
            previous_version: previous,
            mode: g.mode.as_str().into(),
            bytes: bytes.len(),
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncResult {
    version: u64,
    previous_version: Option<u64>,
    mode: String,
    bytes: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContributeResult {
    status: String,
    round: u64,
    base_version: u64,
    bytes: usize,
    epsilon: f64,
    epsilon_before: f64,
    delta: f64,
    norm_before_clip: f64,
    norm_after_clip: f64,
    noise_std: f64,
    tensors: Vec<String>,
    updates_received: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DocInput {
    Text(String),
    Doc(NewDoc),
}

impl FedsearchClient {
    async fn build(files: ModelFiles, opts: CreateOptions) -> Result<FedsearchClient, JsValue> {
        let (device, backend) = pick_device(opts.backend.as_deref().unwrap_or("auto")).await?;
        let encoder = SentenceEncoder::load(&files, &device, opts.max_len.unwrap_or(DEFAULT_MAX_LEN))
            .map_err(|e| js_error(e.to_string()))?;
        let federation = if opts.federation.is_empty() { "default".to_string() } else { opts.federation };
        let db_name = opts.db_name.unwrap_or_else(|| format!("fedsearch-{federation}"));
        let kv = Kv::open(&db_name).await?;
        let state = Inner::restore(&kv, encoder.dim()).await?;
        Ok(FedsearchClient {
            inner: Rc::new(Inner {
                encoder,
                backend,
                state: RefCell::new(state),
                kv,
                worker_url: opts.worker_url,
                federation,
                enroll_token: RefCell::new(opts.enroll_token.filter(|t| !t.is_empty())),
                cancel: Cell::new(false),
            }),
        })
    }
}

/// The browser client of a fedsearch federation.
#[wasm_bindgen]
pub struct FedsearchClient {
    inner: Rc<Inner>,
}

#[wasm_bindgen]
impl FedsearchClient {
    /// `create({workerUrl, federation, modelBaseUrl, backend?, enrollToken?, dbName?, maxLen?},
    /// onProgress?(file, loaded, total, fromCache))`: downloads (or reads from Cache Storage)
    /// `config.json`, `model.safetensors` and `tokenizer.json` under `modelBaseUrl`, picks
    /// WebGPU or the CPU, and restores the local documents and model from IndexedDB.
    pub async fn create(options: JsValue, on_progress: Option<Function>) -> Result<FedsearchClient, JsValue> {
        let opts: CreateOptions =
            serde_wasm_bindgen::from_value(options).map_err(|e| js_error(format!("create(options): {e}")))?;
        if opts.model_base_url.is_empty() {
            return Err(js_error(
                "create(options): modelBaseUrl is required (the folder with config.json, model.safetensors, tokenizer.json)",
            ));
        }
        let base = opts.model_base_url.trim_end_matches('/').to_string();
        let mut files = Vec::new();
        for name in ["config.json", "tokenizer.json", "model.safetensors"] {
            let url = format!("{base}/{name}");
            let cb = on_progress.clone();
            let mut progress = |loaded: f64, total: f64| {
                net::call(cb.as_ref(), &[name.into(), loaded.into(), total.into(), false.into()]);
            };
            let (bytes, cached) = net::cached_download(&url, &mut progress).await?;
            net::call(
                on_progress.as_ref(),
                &[name.into(), (bytes.len() as f64).into(), (bytes.len() as f64).into(), cached.into()],
            );
            files.push(bytes);
        }
        let safetensors = files.pop().unwrap_or_default();
        let tokenizer_json = files.pop().unwrap_or_default();
        let config_json = files.pop().unwrap_or_default();
        Self::build(ModelFiles { config_json, safetensors, tokenizer_json }, opts).await
    }

    /// Like `create` but with the three model files given as bytes (`Uint8Array`s).
    #[wasm_bindgen(js_name = fromModelBytes)]
    pub async fn from_model_bytes(
        config_json: Vec<u8>,
        safetensors: Vec<u8>,
        tokenizer_json: Vec<u8>,
        options: JsValue,
    ) -> Result<FedsearchClient, JsValue> {
        let opts: CreateOptions =
            serde_wasm_bindgen::from_value(options).map_err(|e| js_error(format!("fromModelBytes(options): {e}")))?;
        Self::build(ModelFiles { config_json, safetensors, tokenizer_json }, opts).await
    }

    /// `"webgpu"` or `"cpu"`.
    pub fn backend(&self) -> String {
        self.inner.backend.into()
    }

    /// Embedding width of the model.
    pub fn dim(&self) -> usize {
        self.inner.encoder.dim()
    }

    /// Number of local documents (chunks).
    #[wasm_bindgen(js_name = documentCount)]
    pub fn document_count(&self) -> usize {
        self.inner.state.try_borrow().map(|s| s.docs.len()).unwrap_or(0)
    }

    /// `documents()`: the local documents, `[{id, title, passages, words}]` in the order added.
    pub fn documents(&self) -> Result<JsValue, JsValue> {
        let st = self.inner.state_ref()?;
        to_js(&st.document_list())
    }

    /// `removeDocument(id)`: removes a document (all its passages) with its embedding, head
    /// columns and clicks, and persists; resolves to `{removed, total}` (passages).
    #[wasm_bindgen(js_name = removeDocument)]
    pub fn remove_document(&self, id: String) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut st = inner.state()?;
            let removed = st.remove_document(&id);
            if removed == 0 {
                return Err(js_error(format!("no document {id:?} on this device")));
            }
            inner.persist(&st, &["docs", "emb", "weights", "meta"]).await?;
            to_js(&serde_json::json!({ "removed": removed, "total": st.docs.len() }))
        })
    }

    /// `addDocuments(docs, kind = "text", onProgress?(done, total))`: `docs` are strings or
    /// `{id?, title, text}`; `kind` is `"text"`, `"markdown"` or `"html"`. Long documents are
    /// chunked; missing ids are content hashes. Resolves to `{added, total}`.
    #[wasm_bindgen(js_name = addDocuments)]
    pub fn add_documents(&self, docs: JsValue, kind: Option<String>, on_progress: Option<Function>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let kind_s = kind.unwrap_or_default();
            let kind = TextKind::parse(&kind_s)
                .ok_or_else(|| js_error(format!("unknown document kind {kind_s:?}: use text, markdown or html")))?;
            let input: Vec<DocInput> = serde_wasm_bindgen::from_value(docs).map_err(|e| {
                js_error(format!("addDocuments: expected an array of strings or {{id?, title, text}}: {e}"))
            })?;
            let new: Vec<NewDoc> = input
                .into_iter()
                .map(|d| match d {
                    DocInput::Text(text) => NewDoc { text, ..Default::default() },
                    DocInput::Doc(d) => d,
                })
                .collect();
            let prepared = engine::prepare_documents(new, kind)?;
            let mut st = inner.state()?;
            let mut progress = |done: usize, total: usize| {
                net::call(on_progress.as_ref(), &[(done as f64).into(), (total as f64).into()]);
            };
            let added = st.add_documents(&inner.encoder, prepared, &mut progress).await?;
            inner.persist(&st, &["docs", "emb", "weights", "meta"]).await?;
            #[derive(Serialize)]
            struct Added {
                added: usize,
                total: usize,
            }
            to_js(&Added { added, total: st.docs.len() })
        })
    }

    /// `train({mode: "head" | "adapter+head", epochs, batchSize, headLr, adapterLr, maxSteps},
    /// onProgress?(step, total, loss, examplesPerSec, epoch, valTop1))`: trains on pseudo-queries
    /// of the local documents plus recorded clicks. `cancel()` stops it (the promise rejects
    /// with "training cancelled" and the model keeps its previous weights).
    pub fn train(&self, options: JsValue, on_progress: Option<Function>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let opts: TrainOptions = if options.is_undefined() || options.is_null() {
                TrainOptions::default()
            } else {
                serde_wasm_bindgen::from_value(options).map_err(|e| js_error(format!("train(options): {e}")))?
            };
            let mut st = inner.state()?;
            inner.cancel.set(false);
            let cancel = &inner.cancel;
            let mut progress = |p: &fedsearch_core::train::TrainProgress| {
                let val = p.val_top1.map_or(JsValue::NULL, JsValue::from);
                net::call(
                    on_progress.as_ref(),
                    &[
                        (p.step as f64).into(),
                        (p.total_steps as f64).into(),
                        p.loss.into(),
                        p.examples_per_s.into(),
                        (p.epoch as f64).into(),
                        val,
                    ],
                );
                !cancel.get()
            };
            let report = st.train(&inner.encoder, &opts, &mut progress).await?;
            inner.persist(&st, &["weights", "meta"]).await?;
            to_js(&report)
        })
    }

    /// `benchmark({sentences, encodeBatch, headSteps, adapterSteps, trainBatch}, onStage?(name))`:
    /// runs the shared throughput workload (`fedsearch_core::bench`, the same as
    /// `fedsearch bench throughput` natively) on this client's backend without touching its
    /// documents or model; resolves to `{backend, encodeSentencesPerS, headExamplesPerS,
    /// adapterExamplesPerS, sentences, maxLen, dim}`.
    pub fn benchmark(&self, options: JsValue, on_stage: Option<Function>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let cfg: fedsearch_core::bench::ThroughputConfig = if options.is_undefined() || options.is_null() {
                Default::default()
            } else {
                serde_wasm_bindgen::from_value(options).map_err(|e| js_error(format!("benchmark(options): {e}")))?
            };
            let mut stage = |s: &str| net::call(on_stage.as_ref(), &[s.into()]);
            let t = fedsearch_core::bench::throughput(&inner.encoder, &cfg, &mut stage)
                .await
                .map_err(|e| js_error(e.to_string()))?;
            to_js(&t.to_json(inner.backend))
        })
    }

    /// The loss at each of a few adapter + head training steps from a fixed start
    /// (`fedsearch_core::bench::training_losses`; options `{sentences, steps}`, default 4 and 3):
    /// the same numbers on every backend up to floating point, so the page can check WebGPU
    /// against the CPU. Resolves to `{backend, losses}`; a non-finite loss rejects (`diverged`).
    #[wasm_bindgen(js_name = trainingLosses)]
    pub fn training_losses(&self, options: JsValue) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let cfg: fedsearch_core::bench::LossCheckConfig = if options.is_undefined() || options.is_null() {
                Default::default()
            } else {
                serde_wasm_bindgen::from_value(options)
                    .map_err(|e| js_error(format!("trainingLosses(options): {e}")))?
            };
            let losses = fedsearch_core::bench::training_losses(&inner.encoder, &cfg)
                .await
                .map_err(engine::ClientError::from)?;
            to_js(&serde_json::json!({ "backend": inner.backend, "losses": losses }))
        })
    }

    /// Asks a running `train` to stop after its current step.
    pub fn cancel(&self) {
        self.inner.cancel.set(true);
    }

    /// Enrols this device with a token from the federation's operator.
    pub fn enroll(&self, token: String) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let e = inner.enroll(&token).await?;
            to_js(&serde_json::json!({ "clientId": e.client_id }))
        })
    }

    /// The worker's description of the federation (mode, DP parameters, round, version).
    #[wasm_bindgen(js_name = federationInfo)]
    pub fn federation_info(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { to_js(&inner.federation_info().await?) })
    }

    /// Downloads the current global model and applies it (adapter; shared head columns).
    #[wasm_bindgen(js_name = syncGlobal)]
    pub fn sync_global(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move { to_js(&inner.sync().await?) })
    }

    /// Sends this device's privatized model delta to the worker: delta against the global
    /// version it started from, clipped to the federation's C and noised with its σ, encoded in
    /// the binary update format. Only numbers leave the device: no text, no ids, no queries,
    /// and never the head in personal mode. Resolves to `{round, bytes, epsilon,
    /// epsilonBefore, ...}`.
    pub fn contribute(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let info = inner.federation_info().await?;
            let enrol = inner.enrolment().await?;
            inner.state()?.adopt_initial(&info)?;
            if let Some(sec) = info.secure {
                // Secure aggregation: the worker decodes only the round's sum.
                let (deltas, base_version, epsilon_before, epsilon) = {
                    let st = inner.state()?;
                    let deltas = engine::contribution_deltas(&st, &info)?;
                    let base = st.meta.global.as_ref().map_or(0, |g| g.version);
                    let p = &st.meta.privacy;
                    (deltas, base, p.epsilon(), p.epsilon_after_secure(&sec.params, info.dp.delta)?)
                };
                let tensors = deltas.iter().map(|t| t.name.clone()).collect();
                let fed_url = |path: &str| inner.url(path);
                let out =
                    crate::secure_round::contribute(&fed_url, &info, &enrol.credential, &deltas, base_version).await?;
                let mut st = inner.state()?;
                engine::record_secure_contribution(&mut st, &info, out.round, out.bytes)?;
                inner.persist(&st, &["meta"]).await?;
                let noise_std = (2.0 * sec.params.lambda_per_client()).sqrt() / sec.params.scale;
                return to_js(&ContributeResult {
                    status: "accepted".into(),
                    round: out.round,
                    base_version,
                    bytes: out.bytes,
                    epsilon,
                    epsilon_before,
                    delta: info.dp.delta,
                    norm_before_clip: out.norm_before_clip,
                    norm_after_clip: out.norm_after_clip,
                    noise_std,
                    tensors,
                    updates_received: None,
                });
            }
            let (body, report) = {
                let st = inner.state()?;
                let mut rng =
                    NoiseRng::from_os_entropy().map_err(|e| js_error(format!("no secure randomness: {e}")))?;
                let (body, _update, report) = engine::build_update(&st, &info, &enrol.client_id, &mut rng)?;
                (body, report)
            };
            let resp = net::post_binary(&inner.url("/updates"), &body, &enrol.credential).await?;
            if !resp.ok() {
                return Err(net::http_error("sending the update", &resp).await);
            }
            let text = wasm_bindgen_futures::JsFuture::from(resp.text()?).await?.as_string().unwrap_or_default();
            // The update was sent; an unreadable reply is an error, not "accepted" (nothing is
            // booked, and the person is told).
            let reply: UploadReply = serde_json::from_str(&text).map_err(|e| {
                js_error(format!("the worker's reply to the update is not understood ({e}): {text:.200}"))
            })?;
            let (status, updates_received) = match &reply {
                UploadReply::Accepted { updates_received, .. } => ("accepted", Some(*updates_received)),
                UploadReply::Duplicate { .. } => ("duplicate", None),
            };
            let mut st = inner.state()?;
            if matches!(reply, UploadReply::Accepted { .. }) {
                engine::record_contribution(&mut st, &info, &report)?;
                inner.persist(&st, &["meta"]).await?;
            }
            let ContributionReport {
                round,
                base_version,
                bytes,
                norm_before_clip,
                norm_after_clip,
                noise_std,
                epsilon_before,
                epsilon,
                delta,
                tensors,
            } = report;
            to_js(&ContributeResult {
                status: status.into(),
                round,
                base_version,
                bytes,
                epsilon,
                epsilon_before,
                delta,
                norm_before_clip,
                norm_after_clip,
                noise_std,
                tensors,
                updates_received,
            })
        })
    }

    /// `search(query, k = 10, method = "hybrid")` with method `"car"`, `"mips"`, `"hybrid"` or
    /// `"bm25"` → `[{id, title, score, snippet}]`, computed on the device (works offline).
    pub fn search(&self, query: String, k: Option<usize>, method: Option<String>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let method = Method::parse(method.as_deref().unwrap_or("hybrid"))?;
            let mut st = inner.state()?;
            let hits = st.search(&inner.encoder, &query, k.unwrap_or(10), method).await?;
            to_js(&hits)
        })
    }

    /// Records that the user chose `docId` for `query` (a training pair; stays on the device).
    #[wasm_bindgen(js_name = recordClick)]
    pub fn record_click(&self, query: String, doc_id: String) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut st = inner.state()?;
            st.record_click(&query, &doc_id)?;
            inner.persist(&st, &["meta"]).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// `epsilonAfterSecure(info)`: with the federation's description (`federationInfo()`), the ε
    /// this device will have spent after one more secure round — the cost shown before paying it.
    #[wasm_bindgen(js_name = epsilonAfterSecure)]
    pub fn epsilon_after_secure(&self, info: JsValue) -> Result<f64, JsValue> {
        let info: FederationInfo = serde_wasm_bindgen::from_value(info)
            .map_err(|e| js_error(format!("epsilonAfterSecure: not a federation description: {e}")))?;
        let sec = info.secure.ok_or_else(|| js_error("epsilonAfterSecure: the federation is not secure"))?;
        let st = self.inner.state_ref()?;
        Ok(st.meta.privacy.epsilon_after_secure(&sec.params, info.dp.delta)?)
    }

    /// `epsilonAfter(noiseMultiplier, delta)`: the ε this device will have spent after one more
    /// contribution at the federation's σ and δ — the cost shown before the person pays it.
    #[wasm_bindgen(js_name = epsilonAfter)]
    pub fn epsilon_after(&self, noise_multiplier: f64, delta: f64) -> Result<f64, JsValue> {
        if !(noise_multiplier.is_finite() && noise_multiplier > 0.0 && delta > 0.0 && delta < 1.0) {
            return Err(js_error(format!(
                "epsilonAfter: σ must be positive and δ in (0, 1), got σ = {noise_multiplier}, δ = {delta}"
            )));
        }
        let st = self.inner.state_ref()?;
        Ok(st.meta.privacy.epsilon_after(noise_multiplier as f32, delta)?)
    }

    /// What this device has spent and sent: `{epsilon, delta, contributions, rounds,
    /// bytesSent, clip, noiseMultiplier, enrolled, globalVersion, documents, clicks,
    /// trainedSteps, leavesDevice}`.
    #[wasm_bindgen(js_name = privacyReport)]
    pub fn privacy_report(&self) -> Result<JsValue, JsValue> {
        let st = self.inner.state_ref()?;
        let p = &st.meta.privacy;
        to_js(&serde_json::json!({
            "epsilon": p.epsilon(),
            "delta": p.delta,
            "contributions": p.contributions,
            "rounds": p.rounds,
            "bytesSent": p.bytes_sent,
            "clip": p.last_clip,
            "noiseMultiplier": p.last_noise_multiplier,
            "enrolled": st.meta.enrolment.is_some(),
            "federation": self.inner.federation,
            "globalVersion": st.meta.global.as_ref().map(|g| g.version),
            "mode": st.meta.global.as_ref().map(|g| g.mode.as_str()),
            "documents": st.docs.len(),
            "clicks": st.meta.clicks.len(),
            "trainedSteps": st.meta.trained_steps,
            "leavesDevice": [
                "the model delta (adapter, and in shared mode the head columns of the federation's documents), clipped and noised",
                "the DP parameters declared for it (C, σ, δ, ε spent), the round and base version",
                "the client id and credential given at enrolment",
            ],
            "staysOnDevice": ["documents and their text", "queries and clicks", "embeddings", "the personal head (personal mode)"],
        }))
    }

    /// Deletes every local document, embedding, click and trained weight (and, when
    /// `everything`, the enrolment, privacy accounting and the cached model files).
    #[wasm_bindgen(js_name = clearLocalData)]
    pub fn clear_local_data(&self, everything: Option<bool>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let everything = everything.unwrap_or(false);
            let mut st = inner.state()?;
            st.clear(everything);
            inner.kv.clear().await?;
            inner.persist(&st, &["docs", "emb", "weights", "meta"]).await?;
            if everything {
                net::clear_model_cache().await?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}
