//! A minimal key–value store on IndexedDB (one object store, `kv`), with promises turned
//! into futures. Values are JS values: strings (JSON) and `Uint8Array`s (binary blobs).

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbOpenDbRequest, IdbRequest, IdbTransactionMode};

const STORE: &str = "kv";

fn idb_factory() -> Result<IdbFactory, JsValue> {
    let global = js_sys::global();
    let f = if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        w.indexed_db()?
    } else if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        w.indexed_db()?
    } else {
        None
    };
    f.ok_or_else(|| js_sys::Error::new("IndexedDB is not available in this browser (private mode?)").into())
}

/// A promise that settles with the request's result (or its error).
fn request_promise(req: &IdbRequest) -> Promise {
    let req = req.clone();
    Promise::new(&mut |resolve, reject| {
        let r = req.clone();
        let ok = Closure::once_into_js(move |_e: web_sys::Event| {
            let _ = resolve.call1(&JsValue::NULL, &r.result().unwrap_or(JsValue::UNDEFINED));
        });
        let r = req.clone();
        let fail = Closure::once_into_js(move |_e: web_sys::Event| {
            let msg = r
                .error()
                .ok()
                .flatten()
                .map(|e| format!("IndexedDB: {}: {}", e.name(), e.message()))
                .unwrap_or_else(|| "IndexedDB request failed".into());
            let _ = reject.call1(&JsValue::NULL, &js_sys::Error::new(&msg));
        });
        req.set_onsuccess(Some(ok.unchecked_ref()));
        req.set_onerror(Some(fail.unchecked_ref()));
    })
}

/// The key–value store.
pub struct Kv {
    db: IdbDatabase,
}

impl Kv {
    /// Opens (creating if needed) the database `name`.
    pub async fn open(name: &str) -> Result<Self, JsValue> {
        let req: IdbOpenDbRequest = idb_factory()?.open_with_u32(name, 1)?;
        let upgrade = Closure::once_into_js({
            let req = req.clone();
            move |_e: web_sys::Event| {
                if let Ok(db) = req.result().and_then(|r| r.dyn_into::<IdbDatabase>()) {
                    if !db.object_store_names().contains(STORE) {
                        let _ = db.create_object_store(STORE);
                    }
                }
            }
        });
        req.set_onupgradeneeded(Some(upgrade.unchecked_ref()));
        let db = JsFuture::from(request_promise(&req)).await?;
        Ok(Self { db: db.dyn_into()? })
    }

    /// The value under `key`, `None` when absent.
    pub async fn get(&self, key: &str) -> Result<Option<JsValue>, JsValue> {
        let tx = self.db.transaction_with_str(STORE)?;
        let req = tx.object_store(STORE)?.get(&JsValue::from_str(key))?;
        let v = JsFuture::from(request_promise(&req)).await?;
        Ok((!v.is_undefined() && !v.is_null()).then_some(v))
    }

    /// A string value.
    pub async fn get_string(&self, key: &str) -> Result<Option<String>, JsValue> {
        Ok(self.get(key).await?.and_then(|v| v.as_string()))
    }

    /// A binary value (stored as `Uint8Array` or `ArrayBuffer`).
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, JsValue> {
        Ok(self.get(key).await?.map(|v| Uint8Array::new(&v).to_vec()))
    }

    /// Writes all `entries` in one transaction and waits until it has committed.
    pub async fn put_all(&self, entries: &[(&str, JsValue)]) -> Result<(), JsValue> {
        let tx = self.db.transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite)?;
        let store = tx.object_store(STORE)?;
        for (k, v) in entries {
            store.put_with_key(v, &JsValue::from_str(k))?;
        }
        transaction_done(&tx).await
    }

    /// Deletes every key.
    pub async fn clear(&self) -> Result<(), JsValue> {
        let tx = self.db.transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite)?;
        tx.object_store(STORE)?.clear()?;
        transaction_done(&tx).await
    }
}

async fn transaction_done(tx: &web_sys::IdbTransaction) -> Result<(), JsValue> {
    let tx = tx.clone();
    let p = Promise::new(&mut |resolve, reject| {
        let done = Closure::once_into_js(move |_e: web_sys::Event| {
            let _ = resolve.call0(&JsValue::NULL);
        });
        let reject2 = reject.clone();
        let fail = Closure::once_into_js(move |_e: web_sys::Event| {
            let _ = reject.call1(&JsValue::NULL, &js_sys::Error::new("IndexedDB: the write failed (quota exceeded?)"));
        });
        let abort = Closure::once_into_js(move |_e: web_sys::Event| {
            let _ = reject2
                .call1(&JsValue::NULL, &js_sys::Error::new("IndexedDB: the write was aborted (quota exceeded?)"));
        });
        tx.set_oncomplete(Some(done.unchecked_ref()));
        tx.set_onerror(Some(fail.unchecked_ref()));
        tx.set_onabort(Some(abort.unchecked_ref()));
    });
    JsFuture::from(p).await.map(|_| ())
}

/// Bytes as a JS `Uint8Array` (copied).
pub fn bytes_js(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}
