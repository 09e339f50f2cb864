//! fetch with download progress, Cache Storage for the model files, and the worker's
//! JSON/binary API with its `{"error","message"}` bodies turned into readable errors.

use js_sys::{Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestInit, Response};

/// Name of the Cache Storage bucket holding model files.
pub const MODEL_CACHE: &str = "fedsearch-models-v1";

fn error(msg: impl AsRef<str>) -> JsValue {
    js_sys::Error::new(msg.as_ref()).into()
}

fn global_fetch(req: &Request) -> Result<Promise, JsValue> {
    let global = js_sys::global();
    if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        Ok(w.fetch_with_request(req))
    } else if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        Ok(w.fetch_with_request(req))
    } else {
        Err(error("fetch is not available here"))
    }
}

fn caches() -> Option<web_sys::CacheStorage> {
    let global = js_sys::global();
    // Cache Storage exists only in secure contexts (https or localhost).
    if !Reflect::has(&global, &"caches".into()).unwrap_or(false) {
        return None;
    }
    if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        w.caches().ok()
    } else if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        w.caches().ok()
    } else {
        None
    }
}

/// A fetch; network failures become "cannot reach URL" errors.
pub async fn fetch(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<&JsValue>,
) -> Result<Response, JsValue> {
    let init = RequestInit::new();
    init.set_method(method);
    if let Some(b) = body {
        init.set_body(b);
    }
    let req = Request::new_with_str_and_init(url, &init)?;
    for (k, v) in headers {
        req.headers().set(k, v)?;
    }
    let resp = JsFuture::from(global_fetch(&req)?)
        .await
        .map_err(|e| error(format!("cannot reach {url}: {}", describe(&e))))?;
    resp.dyn_into::<Response>()
}

/// A JS error's message (or its string form).
pub fn describe(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

/// The body of a non-2xx response as an error: the worker's `{"error","message"}` when it is
/// JSON, the status line otherwise.
pub async fn http_error(what: &str, resp: &Response) -> JsValue {
    let status = resp.status();
    let text = match resp.text() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let detail = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .map(|v| {
            let code = v.get("error").and_then(|c| c.as_str()).unwrap_or("error").to_string();
            let msg = v.get("message").and_then(|c| c.as_str()).unwrap_or("").to_string();
            format!("{code}: {msg}")
        })
        .unwrap_or_else(|| text.chars().take(200).collect());
    error(format!("{what} failed (HTTP {status}): {detail}"))
}

/// A response's body as bytes, calling `progress(loaded, total)` as chunks arrive; `total` is
/// 0 when the size is unknown (no Content-Length, or one that the decoded body outgrew).
pub async fn read_body(resp: &Response, progress: &mut dyn FnMut(f64, f64)) -> Result<Vec<u8>, JsValue> {
    let total: f64 = resp.headers().get("content-length").ok().flatten().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let Some(body) = resp.body() else {
        let buf = JsFuture::from(resp.array_buffer()?).await?;
        let v = Uint8Array::new(&buf).to_vec();
        progress(v.len() as f64, v.len() as f64);
        return Ok(v);
    };
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().dyn_into()?;
    let mut out = Vec::with_capacity(total as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await?;
        if Reflect::get(&chunk, &"done".into())?.as_bool().unwrap_or(true) {
            break;
        }
        let value = Reflect::get(&chunk, &"value".into())?;
        out.extend(Uint8Array::new(&value).to_vec());
        let known = if total >= out.len() as f64 { total } else { 0.0 };
        progress(out.len() as f64, known);
    }
    Ok(out)
}

/// A model file: from Cache Storage when present (a second visit downloads nothing), else
/// downloaded (with progress) and stored there. Returns the bytes and whether they came
/// from the cache.
pub async fn cached_download(url: &str, progress: &mut dyn FnMut(f64, f64)) -> Result<(Vec<u8>, bool), JsValue> {
    let cache = match caches() {
        Some(c) => JsFuture::from(c.open(MODEL_CACHE)).await.ok().and_then(|c| c.dyn_into::<web_sys::Cache>().ok()),
        None => None,
    };
    if let Some(cache) = &cache {
        let hit = JsFuture::from(cache.match_with_str(url)).await?;
        if let Ok(resp) = hit.dyn_into::<Response>() {
            let bytes = read_body(&resp, progress).await?;
            return Ok((bytes, true));
        }
    }
    let resp = fetch(url, "GET", &[], None).await?;
    if !resp.ok() {
        return Err(error(format!("cannot download {url}: HTTP {} {}", resp.status(), resp.status_text())));
    }
    if let Some(cache) = &cache {
        // The clone tees the stream: the cache stores one branch while we read the other.
        let copy = resp.clone()?;
        let put = cache.put_with_str(url, &copy);
        let bytes = read_body(&resp, progress).await?;
        if let Err(e) = JsFuture::from(put).await {
            web_sys::console::warn_1(&format!("fedsearch: could not cache {url}: {}", describe(&e)).into());
        }
        return Ok((bytes, false));
    }
    let bytes = read_body(&resp, progress).await?;
    Ok((bytes, false))
}

/// Deletes the model cache.
pub async fn clear_model_cache() -> Result<(), JsValue> {
    if let Some(c) = caches() {
        JsFuture::from(c.delete(MODEL_CACHE)).await?;
    }
    Ok(())
}

/// GET `url` → parsed JSON.
pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str, what: &str) -> Result<T, JsValue> {
    let resp = fetch(url, "GET", &[("accept", "application/json")], None).await?;
    if !resp.ok() {
        return Err(http_error(what, &resp).await);
    }
    let text = JsFuture::from(resp.text()?).await?.as_string().unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| error(format!("{what}: unexpected reply from the worker: {e}")))
}

/// POST JSON → parsed JSON.
pub async fn post_json<T: serde::de::DeserializeOwned>(
    url: &str,
    body: &serde_json::Value,
    what: &str,
) -> Result<T, JsValue> {
    let b = JsValue::from_str(&body.to_string());
    let resp = fetch(url, "POST", &[("content-type", "application/json")], Some(&b)).await?;
    if !resp.ok() {
        return Err(http_error(what, &resp).await);
    }
    let text = JsFuture::from(resp.text()?).await?.as_string().unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| error(format!("{what}: unexpected reply from the worker: {e}")))
}

/// GET with a bearer credential → parsed JSON.
pub async fn get_json_auth<T: serde::de::DeserializeOwned>(
    url: &str,
    credential: &str,
    what: &str,
) -> Result<T, JsValue> {
    let auth = format!("Bearer {credential}");
    let resp = fetch(url, "GET", &[("accept", "application/json"), ("authorization", &auth)], None).await?;
    if !resp.ok() {
        return Err(http_error(what, &resp).await);
    }
    let text = JsFuture::from(resp.text()?).await?.as_string().unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| error(format!("{what}: unexpected reply from the worker: {e}")))
}

/// POST a serialisable body as JSON with a bearer credential → parsed JSON.
pub async fn post_json_auth<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    url: &str,
    body: &B,
    credential: &str,
    what: &str,
) -> Result<T, JsValue> {
    let text = serde_json::to_string(body).map_err(|e| error(format!("{what}: {e}")))?;
    let auth = format!("Bearer {credential}");
    let headers = [("content-type", "application/json"), ("authorization", auth.as_str())];
    let resp = fetch(url, "POST", &headers, Some(&JsValue::from_str(&text))).await?;
    if !resp.ok() {
        return Err(http_error(what, &resp).await);
    }
    let text = JsFuture::from(resp.text()?).await?.as_string().unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| error(format!("{what}: unexpected reply from the worker: {e}")))
}

/// Resolves after `ms` milliseconds (window or worker `setTimeout`).
pub async fn sleep_ms(ms: i32) -> Result<(), JsValue> {
    let promise = Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let _ = if let Some(w) = global.dyn_ref::<web_sys::Window>() {
            w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
        } else if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
            w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
        } else {
            Ok(0)
        };
    });
    JsFuture::from(promise).await.map(|_| ())
}

/// GET → bytes.
pub async fn get_bytes(url: &str, what: &str) -> Result<Vec<u8>, JsValue> {
    let resp = fetch(url, "GET", &[], None).await?;
    if !resp.ok() {
        return Err(http_error(what, &resp).await);
    }
    read_body(&resp, &mut |_, _| {}).await
}

/// POST binary with a bearer credential → the response (status checked by the caller).
pub async fn post_binary(url: &str, body: &[u8], credential: &str) -> Result<Response, JsValue> {
    let b: JsValue = Uint8Array::from(body).into();
    let auth = format!("Bearer {credential}");
    fetch(url, "POST", &[("content-type", "application/octet-stream"), ("authorization", &auth)], Some(&b)).await
}

/// Calls a JS callback, ignoring a missing one and reporting (not propagating) its exceptions.
pub fn call(f: Option<&Function>, args: &[JsValue]) {
    let Some(f) = f else { return };
    let arr = js_sys::Array::new();
    for a in args {
        arr.push(a);
    }
    if let Err(e) = f.apply(&JsValue::NULL, &arr) {
        web_sys::console::error_2(&"fedsearch: a progress callback threw:".into(), &e);
    }
}
