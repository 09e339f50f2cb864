//! HTTP API (axum): routes, auth, upload handling and CORS. Handlers read
//! snapshots for GETs and hand writes to the engine thread.

use crate::engine::{Credentials, FedShared, Job, SubmitOutcome};
use crate::error::{Result, WorkerError};
use crate::metrics::Metrics;
use crate::secure::{SecureMsg, SecureView};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fedsearch_protocol::secagg::{ServerPhase, decode_masked_input};
use fedsearch_protocol::{
    DpRequirement, EnrollReply, FederationInfo, ModelRef, SecureInfo, SecureJoined, SecureRoster, SecureShares,
    SecureSurvivors, Update, UpdateSpec, UploadReply, decode_update, validate_update,
};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tower_http::cors::{AllowOrigin, CorsLayer};

#[derive(Clone)]
pub struct AppState {
    pub feds: Arc<HashMap<String, Arc<FedShared>>>,
    pub jobs: mpsc::Sender<Job>,
    pub creds: Arc<Credentials>,
    pub metrics: Arc<Metrics>,
    /// Bounds uploads being read/decoded/aggregated at once (memory bound).
    pub upload_permits: Arc<Semaphore>,
    /// Time an upload holding a permit has to send its body.
    pub upload_body_deadline: std::time::Duration,
    /// `(federation, client)` pairs with an upload in flight: one at a time per credential, so
    /// that one client cannot take every upload permit.
    pub uploading: UploadsInFlight,
    /// Time any other request has from its head to its answer.
    pub request_deadline: std::time::Duration,
}

/// `(federation, client)` pairs with an upload in flight.
pub type UploadsInFlight = Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>;

/// Marks a credential's upload as in flight until dropped.
struct InFlight {
    set: UploadsInFlight,
    key: (String, String),
}

impl InFlight {
    fn start(st: &AppState, fed: &str, client: &str) -> Result<Self> {
        let key = (fed.to_string(), client.to_string());
        let mut set = st.uploading.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.clone()) {
            return Err(WorkerError::UploadInProgress);
        }
        Ok(Self { set: st.uploading.clone(), key })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

impl AppState {
    fn fed(&self, id: &str) -> Result<&Arc<FedShared>> {
        self.feds.get(id).ok_or_else(|| WorkerError::UnknownFederation(id.into()))
    }
}

pub fn router(state: AppState, allowed_origin: Option<&str>) -> Result<Router> {
    let mut app = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/federations/{id}", get(federation_info))
        .route("/v1/federations/{id}/model", get(model))
        .route("/v1/federations/{id}/round", get(round))
        .route("/v1/federations/{id}/enroll", post(enroll))
        .route("/metrics", get(metrics))
        .route("/v1/federations/{id}/secure", get(secure_status))
        .route("/v1/federations/{id}/secure/keys", post(secure_keys).layer(DefaultBodyLimit::max(SECURE_JSON_LIMIT)))
        .route("/v1/federations/{id}/secure/roster", get(secure_roster))
        .route(
            "/v1/federations/{id}/secure/shares",
            get(secure_shares).post(secure_send_shares).layer(DefaultBodyLimit::max(SECURE_JSON_LIMIT)),
        )
        .route("/v1/federations/{id}/secure/survivors", get(secure_survivors))
        .route(
            "/v1/federations/{id}/secure/reveals",
            post(secure_reveals).layer(DefaultBodyLimit::max(SECURE_JSON_LIMIT)),
        )
        // Every route above answers within `request_secs` of its head, body included (a
        // per-frame idle timeout would let a body trickle in a byte at a time for hours).
        .route_layer(axum::middleware::from_fn_with_state(state.request_deadline, request_deadline))
        // Uploads have their own deadline, `upload_body_secs`, counted from taking a permit.
        .route("/v1/federations/{id}/updates", post(upload))
        .route("/v1/federations/{id}/secure/masked", post(secure_masked))
        // JSON bodies (enrolment) are tiny; uploads read their body themselves.
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(state)
        .layer(axum::middleware::from_fn(json_errors));
    if let Some(origin) = allowed_origin {
        let origin = HeaderValue::from_str(origin)
            .map_err(|_| WorkerError::Config(format!("allowed_origin {origin:?} is not a valid header value")))?;
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::exact(origin))
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_NONE_MATCH])
                .expose_headers([header::ETAG, HeaderName::from_static("x-model-version")]),
        );
    }
    Ok(app.layer(tower_http::trace::TraceLayer::new_for_http()))
}

/// Answers 408 `body_timeout` when the request has not been answered within `deadline`.
async fn request_deadline(
    State(deadline): State<std::time::Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => WorkerError::BodyTimeout { secs: deadline.as_secs() }.into_response(),
    }
}

/// Every error is the documented JSON `{error, message}`: axum's own rejections (a body over
/// the limit, a route or method that does not exist, a path that does not decode) answer in
/// plain text or with an empty body; this rewrites them, keeping status and headers.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Rejection texts are short; never buffer more than a little of anything else.
    let text = match http_body_util::Limited::new(body, 4096).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let body = serde_json::to_vec(&json!({ "error": code, "message": message })).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render())
}

async fn federation_info(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let fed = st.fed(&id)?;
    let c = &fed.cfg;
    let snap = fed.snapshot();
    Ok(Json(FederationInfo {
        id: c.id.clone(),
        model: ModelRef { id: c.model_id.clone(), sha256: c.model_sha256.clone(), url: c.model_url.clone() },
        mode: c.mode,
        dim: c.dim,
        n_docs: c.n_docs,
        doc_ids: c.doc_ids.clone(),
        tensors: fed.specs.clone(),
        dp: DpRequirement { clip: c.dp.clip, noise_multiplier: c.dp.noise_multiplier, delta: c.dp.delta },
        min_clients: c.min_clients,
        target_clients: c.target_clients,
        round_deadline_s: c.round_deadline_s,
        max_update_bytes: c.max_update_bytes(),
        optimizer: c.optimizer,
        current_version: snap.status.current_version,
        current_round: snap.status.round,
        secure: match (c.secure, fed.skellam) {
            (Some(s), Some(params)) => Some(SecureInfo {
                neighbours: s.neighbours,
                params,
                planned_rounds: s.planned_rounds,
                epsilon: if params.mu > 0.0 {
                    Some(params.epsilon(s.planned_rounds, c.dp.delta).map_err(|e| WorkerError::Config(e.to_string()))?)
                } else {
                    None
                },
                phase_secs: s.phase_secs,
            }),
            _ => None,
        },
    })
    .into_response())
}

#[derive(Deserialize)]
struct ModelQuery {
    encoding: Option<String>,
}

async fn model(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ModelQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let snap = st.fed(&id)?.snapshot();
    let f16 = match q.encoding.as_deref() {
        None | Some("f32") => false,
        Some("f16") => true,
        Some(other) => {
            return Err(WorkerError::BadRequest(format!("encoding {other:?}: use f32 or f16")));
        }
    };
    let etag = if f16 { format!("{}-f16\"", snap.etag.trim_end_matches('"')) } else { snap.etag.clone() };
    let version = snap.status.current_version.to_string();
    let common = [
        (header::ETAG, etag.clone()),
        (HeaderName::from_static("x-model-version"), version),
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    let body = if f16 { snap.model_f16.clone() } else { snap.model_f32.clone() };
    Ok((common, [(header::CONTENT_TYPE, "application/octet-stream".to_string())], body).into_response())
}

async fn round(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    Ok(Json(st.fed(&id)?.snapshot().status.clone()).into_response())
}

#[derive(Deserialize)]
struct EnrollRequest {
    token: String,
}

async fn enroll(State(st): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response> {
    st.fed(&id)?;
    let req: EnrollRequest = serde_json::from_slice(&body)
        .map_err(|e| WorkerError::BadRequest(format!("expected JSON {{\"token\": \"...\"}}: {e}")))?;
    let (reply, rx) = oneshot::channel();
    st.jobs
        .send(Job::Enroll { federation: id, token: req.token, reply })
        .await
        .map_err(|_| WorkerError::Unavailable)?;
    let e = rx.await.map_err(|_| WorkerError::Unavailable)??;
    Ok(Json(EnrollReply { client_id: e.client_id, credential: e.credential }).into_response())
}

async fn upload(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let mut body_read = false;
    match upload_inner(&st, &id, &headers, body, &mut body_read).await {
        Ok(r) => r,
        Err(e) => {
            let e = e.clipped();
            if !e.status().is_server_error() {
                st.metrics.reject(e.code());
                tracing::debug!(federation = %id, error = %e, "update rejected");
            }
            upload_error(e, body_read)
        }
    }
}

/// An upload's error answer. While the rest of the body is still on the wire, it tells the client
/// not to reuse the connection (hyper then closes it).
fn upload_error(e: WorkerError, body_read: bool) -> Response {
    let mut r = e.into_response();
    if !body_read {
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

async fn upload_inner(
    st: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    body_read: &mut bool,
) -> Result<Response> {
    let fed = st.fed(id)?.clone();
    if fed.cfg.secure.is_some() {
        return Err(WorkerError::WrongAggregation(format!(
            "federation {id} aggregates securely: follow /v1/federations/{id}/secure instead of uploading"
        )));
    }
    let (ident, bytes, _held) = read_upload(st, id, headers, body, fed.cfg.max_update_bytes(), body_read).await?;
    st.metrics.bytes_received.fetch_add(bytes.len() as u64, Ordering::Relaxed);

    let snap = fed.snapshot();
    let fed2 = fed.clone();
    let (current_round, current_version) = (snap.status.round, snap.status.current_version);
    let update: Update = tokio::task::spawn_blocking(move || -> Result<Update> {
        let update = decode_update(&bytes).map_err(WorkerError::Undecodable)?;
        drop(bytes);
        if update.client_id != ident.client_id {
            return Err(WorkerError::ClientMismatch {
                credential_client: ident.client_id,
                update_client: update.client_id,
            });
        }
        if update.round != current_round {
            return Err(WorkerError::WrongRound { current_round, got: update.round });
        }
        let c = &fed2.cfg;
        let mut spec = UpdateSpec::for_federation(
            c.id.clone(),
            c.mode,
            c.dim,
            c.n_docs,
            current_version,
            c.dp.clip,
            c.dp.noise_multiplier,
        )?;
        spec.max_delta = Some(c.dp.delta);
        validate_update(&update, &spec).map_err(WorkerError::Invalid)?;
        Ok(update)
    })
    .await
    .map_err(|e| WorkerError::Storage(format!("validation task failed: {e}")))??;

    let (reply, rx) = oneshot::channel();
    st.jobs.send(Job::Submit { update: Box::new(update), reply }).await.map_err(|_| WorkerError::Unavailable)?;
    match rx.await.map_err(|_| WorkerError::Unavailable)?? {
        SubmitOutcome::Accepted { round, updates_received } => {
            Ok(Json(UploadReply::Accepted { round, updates_received }).into_response())
        }
        SubmitOutcome::Duplicate { round } => Ok(Json(UploadReply::Duplicate {
            round,
            message: "this client's update for this round was already accepted; it is counted once".into(),
        })
        .into_response()),
    }
}

struct Ident {
    client_id: String,
}

/// Held while an upload body is read and handled: its permit and its credential's in-flight mark.
struct HeldUpload {
    _in_flight: InFlight,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Authenticates an upload and reads its body (≤ `limit` bytes) within the upload deadline,
/// holding one of the upload permits (a memory bound) and the credential's one in-flight slot.
async fn read_upload(
    st: &AppState,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    body_read: &mut bool,
) -> Result<(Ident, Vec<u8>, HeldUpload)> {
    let ident = authenticate(st, id, headers)?;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(WorkerError::BodyTooLarge { limit });
    }
    let in_flight = InFlight::start(st, id, &ident.client_id)?;
    // Hold a permit from before the body is read until the engine answered:
    // caps memory at max_concurrent_uploads bodies regardless of client count.
    let permit = st.upload_permits.clone().acquire_owned().await.map_err(|_| WorkerError::Unavailable)?;
    let deadline = st.upload_body_deadline;
    let bytes = tokio::time::timeout(deadline, read_limited(body, limit, declared))
        .await
        .map_err(|_| WorkerError::BodyTimeout { secs: deadline.as_secs() })??;
    *body_read = true;
    st.metrics.bytes_received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok((ident, bytes, HeldUpload { _in_flight: in_flight, _permit: permit }))
}

/// Largest JSON body of a secure-round message (254 neighbours' sealed shares fit).
const SECURE_JSON_LIMIT: usize = 256 * 1024;

/// `?round=R&attempt=A`: the secure round a client's message belongs to.
#[derive(Deserialize)]
struct SecureQuery {
    round: u64,
    attempt: u64,
}

fn secure_view(st: &AppState, id: &str) -> Result<Arc<SecureView>> {
    st.fed(id)?.secure_view().ok_or_else(|| {
        WorkerError::WrongAggregation(format!("federation {id} does not aggregate securely: upload to /updates"))
    })
}

/// Hands one secure message to the engine; the client's index for keys.
async fn secure_send(
    st: &AppState,
    id: &str,
    client_id: String,
    q: &SecureQuery,
    msg: SecureMsg,
) -> Result<Option<u32>> {
    let (reply, rx) = oneshot::channel();
    let job = Job::Secure { federation: id.into(), client_id, round: q.round, attempt: q.attempt, msg, reply };
    st.jobs.send(job).await.map_err(|_| WorkerError::Unavailable)?;
    rx.await.map_err(|_| WorkerError::Unavailable)?
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| WorkerError::BadRequest(format!("expected {what}: {e}")))
}

/// The open secure round and this credential's index in it, once the round is at `at_least`.
fn secure_client(
    st: &AppState,
    id: &str,
    headers: &HeaderMap,
    at_least: ServerPhase,
) -> Result<(Arc<SecureView>, u32)> {
    let view = secure_view(st, id)?;
    let ident = authenticate(st, id, headers)?;
    let index = secure_index(&view, &ident.client_id, at_least)?;
    Ok((view, index))
}

/// The client's index in the open attempt, once the keys phase has closed.
fn secure_index(view: &SecureView, client_id: &str, at_least: ServerPhase) -> Result<u32> {
    if view.status.phase.is_none_or(|p| p < at_least) {
        return Err(WorkerError::SecurePhase(format!("round {} is not past {at_least:?} yet", view.status.round)));
    }
    view.index_of.get(client_id).copied().ok_or_else(|| {
        WorkerError::SecurePhase(format!(
            "this client is not in round {} attempt {}",
            view.status.round, view.status.attempt
        ))
    })
}

async fn secure_status(State(st): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    Ok(Json(secure_view(&st, &id)?.status.clone()).into_response())
}

/// A secure JSON message: authenticated, parsed as `T`, wrapped and handed to the engine.
async fn secure_post<T: serde::de::DeserializeOwned>(
    st: &AppState,
    id: &str,
    q: &SecureQuery,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
    wrap: fn(T) -> SecureMsg,
) -> Result<Option<u32>> {
    secure_view(st, id)?;
    let ident = authenticate(st, id, headers)?;
    let msg = wrap(parse_json(body, what)?);
    secure_send(st, id, ident.client_id, q, msg).await
}

async fn secure_keys(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SecureQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let what = "{\"index\", \"c_pk\", \"s_pk\"}";
    let index = secure_post(&st, &id, &q, &headers, &body, what, SecureMsg::Keys).await?.unwrap_or_default();
    Ok(Json(SecureJoined { round: q.round, attempt: q.attempt, index }).into_response())
}

async fn secure_roster(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response> {
    let (view, _) = secure_client(&st, &id, &headers, ServerPhase::Shares)?;
    let s = &view.status;
    Ok(Json(SecureRoster { round: s.round, attempt: s.attempt, roster: view.roster.to_vec() }).into_response())
}

async fn secure_send_shares(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SecureQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    secure_post(&st, &id, &q, &headers, &body, "a list of sealed shares", SecureMsg::Shares).await?;
    Ok(Json(json!({ "status": "accepted" })).into_response())
}

async fn secure_shares(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response> {
    let (view, index) = secure_client(&st, &id, &headers, ServerPhase::Masked)?;
    let s = &view.status;
    let shares = view.mailbox.get(&index).cloned().unwrap_or_default();
    Ok(Json(SecureShares { round: s.round, attempt: s.attempt, shares }).into_response())
}

async fn secure_survivors(State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response> {
    let (view, _) = secure_client(&st, &id, &headers, ServerPhase::Unmask)?;
    let s = &view.status;
    Ok(Json(SecureSurvivors { round: s.round, attempt: s.attempt, survivors: view.survivors.to_vec() }).into_response())
}

async fn secure_reveals(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SecureQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    secure_post(&st, &id, &q, &headers, &body, "a list of revealed shares", SecureMsg::Reveals).await?;
    Ok(Json(json!({ "status": "accepted" })).into_response())
}

/// `POST …/secure/masked?round=R&attempt=A`: the client's masked input (binary, FSMI), read like
/// an upload (permit, deadline, one at a time per credential).
async fn secure_masked(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SecureQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut body_read = false;
    let result = async {
        secure_view(&st, &id)?;
        let params = st.fed(&id)?.skellam.ok_or_else(|| WorkerError::WrongAggregation(id.clone()))?;
        let limit = 64 + 4 * params.dim as u64;
        let (ident, bytes, _held) = read_upload(&st, &id, &headers, body, limit, &mut body_read).await?;
        let input = decode_masked_input(&bytes).map_err(|e| WorkerError::BadRequest(e.to_string()))?;
        secure_send(&st, &id, ident.client_id, &q, SecureMsg::Masked(input)).await?;
        Ok::<_, WorkerError>(Json(json!({ "status": "accepted" })).into_response())
    }
    .await;
    result.unwrap_or_else(|e| upload_error(e, body_read))
}

fn authenticate(st: &AppState, fed_id: &str, headers: &HeaderMap) -> Result<Ident> {
    let value = headers.get(header::AUTHORIZATION).ok_or(WorkerError::MissingCredential)?;
    let value = value.to_str().map_err(|_| WorkerError::InvalidCredential)?;
    let cred = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(WorkerError::MissingCredential)?
        .trim();
    let h = crate::db::hash_secret(cred);
    let creds = st.creds.read().map_err(|_| WorkerError::Unavailable)?;
    match creds.get(&h) {
        Some(c) if c.federation_id == fed_id => Ok(Ident { client_id: c.client_id.clone() }),
        _ => Err(WorkerError::InvalidCredential),
    }
}

/// Reads at most `limit` bytes, failing as soon as the body grows past it.
async fn read_limited(mut body: Body, limit: u64, declared: Option<u64>) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| WorkerError::BodyRead(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() as u64 + data.len() as u64 > limit {
                return Err(WorkerError::BodyTooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}
