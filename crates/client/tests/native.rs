//! Native tests of the client's engine on the tiny model (flex CPU): golden values the browser
//! tests compare against, training, the privatized update, search and restore.

mod common;

use burn::prelude::Device;
use common::*;
use fedsearch_client::engine::{
    FederationDp, FederationInfo, Method, State, TrainOptions, build_update, contribution_deltas, prepare_documents,
    record_contribution, record_secure_contribution,
};
use fedsearch_core::document::TextKind;
use fedsearch_core::model::SentenceEncoder;
use fedsearch_core::train::TrainMode;
use fedsearch_privacy::NoiseRng;
use fedsearch_protocol::{FederationMode, GlobalModel, UpdateSpec, decode_update, validate_update};

fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

fn encoder() -> SentenceEncoder {
    SentenceEncoder::load(&tiny_files(), &Device::flex(), 64).unwrap()
}

fn pooled(enc: &SentenceEncoder) -> Vec<f32> {
    block(enc.embed(&POOL_TEXTS, None, 8, &mut |_, _| {})).unwrap()
}

/// A tool, not a test: prints the golden values pasted into `common/mod.rs`
/// (`cargo test --workspace --test native print_golden -- --ignored --nocapture`); the check
/// itself is `golden_values_match_the_native_model`.
#[test]
#[ignore = "a tool that prints golden values; it asserts nothing"]
fn print_golden() {
    let enc = encoder();
    println!("GOLDEN_IDS = {:?}", enc.tokenizer.ids(GOLDEN_TEXT).unwrap());
    let p = pooled(&enc);
    let d = enc.dim();
    println!("GOLDEN_POOLED = [{:?}, {:?}]", &p[0..8], &p[d..d + 8]);
}

/// The federation's wire names (protocol, which the worker uses without a model) are the
/// model's own (core's host model and checkpoints).
#[test]
fn the_wire_names_are_the_models() {
    use fedsearch_core::host;
    assert_eq!(
        [
            fedsearch_protocol::ADAPTER_WEIGHT,
            fedsearch_protocol::ADAPTER_BIAS,
            fedsearch_protocol::HEAD_WEIGHT,
            fedsearch_protocol::HEAD_BIAS
        ],
        [host::ADAPTER_WEIGHT, host::ADAPTER_BIAS, host::HEAD_WEIGHT, host::HEAD_BIAS]
    );
}

#[test]
fn golden_values_match_the_native_model() {
    let enc = encoder();
    assert_eq!(enc.tokenizer.ids(GOLDEN_TEXT).unwrap(), GOLDEN_IDS);
    let p = pooled(&enc);
    let d = enc.dim();
    for (row, golden) in GOLDEN_POOLED.iter().enumerate() {
        for (i, g) in golden.iter().enumerate() {
            let v = p[row * d + i];
            assert!((v - g).abs() < 1e-5, "pooled[{row}][{i}] = {v}, golden {g}");
        }
    }
}

fn state_with_corpus(enc: &SentenceEncoder) -> State {
    let mut st = State::empty(enc.dim());
    let docs = prepare_documents(corpus(), TextKind::Text).unwrap();
    let added = block(st.add_documents(enc, docs, &mut |_, _| {})).unwrap();
    assert_eq!(added, corpus().len());
    st
}

fn shared_info(n_docs: u32, dim: u32, ids: Vec<String>) -> FederationInfo {
    FederationInfo {
        id: "demo".into(),
        mode: FederationMode::Shared,
        dim,
        n_docs,
        doc_ids: Some(ids),
        dp: FederationDp { clip: 1.0, noise_multiplier: 0.8, delta: 1e-5 },
        current_version: 0,
        current_round: 0,
        secure: None,
        model: fedsearch_protocol::ModelRef { id: "test".into(), sha256: None, url: None },
        tensors: fedsearch_protocol::federated_tensor_specs(FederationMode::Shared, dim, n_docs),
        min_clients: 1,
        target_clients: 1,
        round_deadline_s: 60,
        max_update_bytes: 1 << 30,
        optimizer: fedsearch_protocol::ServerOptimizer::default(),
    }
}

#[test]
fn head_training_lowers_the_loss_and_click_pairs_count() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    st.record_click("capital of italy", "rome").unwrap();
    assert!(st.record_click("x", "missing").is_err());
    let mut losses = Vec::new();
    // Without the pull back to the keys, so that the loss measures how well the head fits.
    let opts =
        TrainOptions { epochs: Some(30), holdout_fraction: Some(0.0), head_pull: Some(0.0), ..Default::default() };
    let report = block(st.train(&enc, &opts, &mut |p| {
        losses.push(p.loss);
        true
    }))
    .unwrap();
    assert!(report.steps > 5);
    let first = losses[0];
    let last = *losses.last().unwrap();
    assert!(last < first * 0.7, "loss {first} -> {last}");
    // The trained head ranks a pseudo-query's document first.
    let hits = block(st.search(&enc, "Rome", 3, Method::Car)).unwrap();
    assert_eq!(hits[0].id, "rome", "{hits:?}");
}

/// The head is keyed by the documents' frozen embeddings: an untrained tab's CaR ranks exactly
/// like inner-product search (the trained model starts where the frozen encoder is, not below).
/// Before training the CaR ranks by inner product with its keys: each document embedding moved
/// towards its category questions ("Paris is the capital of France." → "Which capital of
/// France?"), the document embedding itself where the first sentence gives none.
#[test]
fn an_untrained_head_ranks_by_its_keys() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    let d = enc.dim();
    let ids: Vec<String> = st.docs.iter().map(|x| x.id.clone()).collect();
    let pos = |id: &str| ids.iter().position(|x| x == id).unwrap();
    let row = |v: &[f32], i: usize| v[i * d..(i + 1) * d].to_vec();
    assert_ne!(row(&st.key_emb, pos("paris")), row(&st.doc_emb, pos("paris")), "Paris has a category question");
    let questionless = (0..st.docs.len())
        .filter(|&i| fedsearch_core::pseudo::category_questions_of(&st.docs[i].text, 32).is_empty())
        .collect::<Vec<_>>();
    assert!(!questionless.is_empty());
    for &i in &questionless {
        let (k, e) = (row(&st.key_emb, i), row(&st.doc_emb, i));
        assert!(k.iter().zip(&e).all(|(a, b)| (a - b).abs() < 1e-6), "{}: {k:?} vs {e:?}", st.docs[i].id);
    }
    for q in ["capital of italy", "a river", "music"] {
        let qe = block(enc.embed(&[q], None, 1, &mut |_, _| {})).unwrap();
        let car = block(st.search(&enc, q, 5, Method::Car)).unwrap();
        for hit in &car {
            let key = row(&st.key_emb, pos(&hit.id));
            let want = 20.0 * qe.iter().zip(&key).map(|(a, b)| a * b).sum::<f32>();
            assert!((hit.score - want).abs() < 1e-3, "{q}: CaR {} vs 20 × q·key {want}", hit.score);
        }
    }
    // A state saved before keys had rows of their own restores with the embeddings as keys.
    let old_blob = st.doc_emb.clone();
    let restored = State::restore(d, st.docs.clone(), old_blob, None, None).unwrap();
    assert_eq!(restored.key_emb, st.doc_emb);
}

/// A click is a training pair that never leaves the tab: after the next training the clicked
/// document rises for that query (from last place after training without it, to first).
#[test]
fn a_click_lifts_its_document_for_that_query_after_training() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    let q = "where can I eat something good";
    let opts = TrainOptions { epochs: Some(30), holdout_fraction: Some(0.0), ..Default::default() };
    block(st.train(&enc, &opts, &mut |_| true)).unwrap();
    // The document the model trained without the click ranks last for the query.
    let trained = block(st.search(&enc, q, 8, Method::Car)).unwrap();
    let clicked = trained.last().unwrap().id.clone();
    let rank = |hits: &[fedsearch_client::engine::Hit]| hits.iter().position(|h| h.id == clicked).unwrap();
    let without = rank(&trained);
    let mut st = state_with_corpus(&enc);
    st.record_click(q, &clicked).unwrap();
    block(st.train(&enc, &opts, &mut |_| true)).unwrap();
    let with = rank(&block(st.search(&enc, q, 8, Method::Car)).unwrap());
    assert!(with < without, "the click moved {clicked} from rank {without} (trained without it) to {with}");
    assert_eq!(with, 0, "the clicked document is first for its query");
}

/// A diverging run is a typed error (the page branches on its code, not its text) and leaves
/// the model as it was.
#[test]
fn a_diverging_run_reports_code_diverged() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    let before = st.model.clone();
    let opts = TrainOptions { epochs: Some(5), holdout_fraction: Some(0.0), head_lr: Some(1e38), ..Default::default() };
    let e = block(st.train(&enc, &opts, &mut |_| true)).unwrap_err();
    assert_eq!(e.code, fedsearch_client::engine::ErrorCode::Diverged, "{e}");
    assert!(e.message.contains("lower the learning rate"), "{e}");
    assert_eq!(st.model, before);
}

/// Two epochs of adapter + head on every pair (no held-out ones).
fn adapter_two_epochs() -> TrainOptions {
    TrainOptions {
        mode: Some(TrainMode::AdapterHead),
        epochs: Some(2),
        holdout_fraction: Some(0.0),
        ..Default::default()
    }
}

#[test]
fn adapter_training_runs_and_cancel_stops_it() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    let before = st.model.adapter_w.clone();
    let opts = adapter_two_epochs();
    block(st.train(&enc, &opts, &mut |_| true)).unwrap();
    assert_ne!(st.model.adapter_w, before, "the adapter must change");
    let trained = st.model.clone();
    let err = block(st.train(&enc, &opts, &mut |p| p.step < 2)).unwrap_err();
    assert!(err.message.contains("cancelled"), "{err}");
    assert_eq!(err.code, fedsearch_client::engine::ErrorCode::Cancelled);
    assert_eq!(st.model, trained, "a cancelled run leaves the model as it was");
}

/// The page's hybrid is the default fusion of its parts (`HybridWeights::default()`, QUALITY.md:
/// one weighting for every setting), after head-only training and after the adapter has trained.
#[test]
fn the_hybrid_fuses_its_parts_with_the_default_weights() {
    use fedsearch_core::adapter::SoftEmbeddingAdapter;
    use fedsearch_core::index::HybridWeights;
    use fedsearch_core::search::top_k;
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    let query = "capital of France";
    // The page's ranking computed here from its parts: the CaR logits through the current
    // adapter, MIPS on the frozen embedding, BM25, fused with `weights`.
    let expected = |st: &State, weights: HybridWeights| {
        let adapter =
            SoftEmbeddingAdapter::from_values(st.model.adapter_w.clone(), st.model.adapter_b.clone(), enc.device());
        let q_car = block(enc.embed(&[query], Some(&adapter), 1, &mut |_, _| {})).unwrap();
        let q_mips = block(enc.embed(&[query], None, 1, &mut |_, _| {})).unwrap();
        let scores = st.index.hybrid_scores(&st.model.logits(&q_car, &st.key_emb), &q_mips, query, weights);
        top_k(&scores, 5).into_iter().map(|i| (st.docs[i].id.clone(), scores[i])).collect::<Vec<_>>()
    };
    let search = |st: &mut State| {
        let hits = block(st.search(&enc, query, 5, Method::Hybrid)).unwrap();
        hits.into_iter().map(|h| (h.id, h.score)).collect::<Vec<_>>()
    };
    // The weights before stop 25: a page fusing with them must fail this test.
    let previous = HybridWeights { car: 1.0, mips: 1.0, bm25: 0.5 };
    block(st.train(&enc, &TrainOptions { epochs: Some(3), ..Default::default() }, &mut |_| true)).unwrap();
    let head_only = expected(&st, HybridWeights::default());
    assert_ne!(head_only, expected(&st, previous), "the weights must tell the two apart");
    assert_eq!(search(&mut st), head_only);
    let adapter_before = st.model.adapter_w.clone();
    block(st.train(&enc, &adapter_two_epochs(), &mut |_| true)).unwrap();
    assert_ne!(st.model.adapter_w, adapter_before, "the adapter must have trained");
    let trained = expected(&st, HybridWeights::default());
    assert_ne!(trained, head_only, "the adapter must change the ranking's scores");
    assert_eq!(search(&mut st), trained);
}

#[test]
fn the_update_is_private_valid_and_textless() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    let d = enc.dim() as u32;
    // The federation knows 10 documents; 5 of ours are among them.
    let mut ids: Vec<String> = ["paris", "rome", "x1", "moon", "x2", "football", "x3", "x4", "ship", "x5"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    ids.truncate(10);
    let info = shared_info(10, d, ids.clone());
    let g = GlobalModel::initial("demo", FederationMode::Shared, d, 10, Some(ids.clone()));
    assert!(build_update(&st, &info, "c1", &mut NoiseRng::from_seed([1; 32])).is_err(), "needs a synced global first");
    st.apply_global(&g).unwrap();
    block(st.train(
        &enc,
        &TrainOptions { mode: Some(TrainMode::AdapterHead), epochs: Some(3), ..Default::default() },
        &mut |_| true,
    ))
    .unwrap();
    let (body, update, report) = build_update(&st, &info, "c1", &mut NoiseRng::from_seed([7; 32])).unwrap();
    assert!(report.norm_after_clip <= 1.0 + 1e-6, "clipped norm {}", report.norm_after_clip);
    assert!(report.norm_before_clip > 0.0);
    assert!(report.epsilon > 0.0 && report.epsilon_before == 0.0);
    let decoded = decode_update(&body).unwrap();
    assert_eq!(decoded, update);
    let spec = UpdateSpec::for_federation("demo", FederationMode::Shared, d, 10, 0, 1.0, 0.8).unwrap();
    validate_update(&decoded, &spec).unwrap();
    // Before noise (the delta the update builder privatizes): the columns of the federation's
    // documents this device does not hold are exactly zero, its own federated columns moved, and
    // its documents outside the federation have no column at all.
    let deltas = contribution_deltas(&st, &info).unwrap();
    let head_w = deltas.iter().find(|t| t.name == fedsearch_protocol::HEAD_WEIGHT).unwrap();
    let head_b = deltas.iter().find(|t| t.name == fedsearch_protocol::HEAD_BIAS).unwrap();
    assert_eq!(head_w.shape, vec![d, 10], "one column per federation document");
    let column = |j: usize| (0..d as usize).map(|r| head_w.data[r * 10 + j]).collect::<Vec<f32>>();
    for (j, id) in ids.iter().enumerate() {
        let moved = column(j).iter().any(|v| *v != 0.0) || head_b.data[j] != 0.0;
        assert_eq!(moved, !id.starts_with('x'), "column {j} ({id}): moved {moved}");
    }
    // And nothing of the text is in the body.
    let body_text = String::from_utf8_lossy(&body).to_lowercase();
    for doc in corpus() {
        for w in doc.text.split_whitespace().filter(|w| w.len() > 4) {
            let w = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
            assert!(!body_text.contains(&w), "the update body contains document text {w:?}");
        }
        assert!(!body_text.contains(&doc.title.to_lowercase()) || doc.title.len() < 4);
    }
    record_contribution(&mut st, &info, &report).unwrap();
    assert!((st.meta.privacy.epsilon() - report.epsilon).abs() < 1e-9);
    assert_eq!(st.meta.privacy.bytes_sent, body.len() as u64);

    // Personal mode: the head never leaves.
    let mut pinfo = info.clone();
    pinfo.mode = FederationMode::Personal;
    let pg = GlobalModel::initial("demo", FederationMode::Personal, d, 0, None);
    st.apply_global(&pg).unwrap();
    let (_, pu, _) = build_update(&st, &pinfo, "c1", &mut NoiseRng::from_seed([3; 32])).unwrap();
    assert!(
        pu.tensors.iter().all(|t| !t.name.starts_with("head")),
        "{:?}",
        pu.tensors.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let pspec = UpdateSpec::for_federation("demo", FederationMode::Personal, d, 0, 0, 1.0, 0.8).unwrap();
    validate_update(&pu, &pspec).unwrap();

    // A stale base version is refused with advice.
    let mut stale = info;
    stale.current_version = 3;
    st.apply_global(&g).unwrap();
    let e = build_update(&st, &stale, "c1", &mut NoiseRng::from_seed([3; 32])).unwrap_err();
    assert!(e.message.contains("sync"), "{e}");

    // A secure federation: no plain update; the deltas are the same tensors; a secure round is
    // booked with its Skellam parameters and ε grows by exactly what `epsilonAfterSecure` showed.
    let mut secure = shared_info(10, d, ids_for_secure());
    let params = fedsearch_protocol::SkellamParams::for_target(8.0, 1e-5, 4, 1.0, 1000, 10, 5).unwrap();
    secure.secure = Some(fedsearch_protocol::SecureInfo {
        neighbours: 4,
        params,
        planned_rounds: 4,
        epsilon: Some(8.0),
        phase_secs: 60,
    });
    assert!(build_update(&st, &secure, "c1", &mut NoiseRng::from_seed([3; 32])).is_err());
    let deltas = contribution_deltas(&st, &secure).unwrap();
    assert_eq!(
        deltas.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["adapter.weight", "adapter.bias", "head.weight", "head.bias"]
    );
    let before = st.meta.privacy.epsilon();
    let shown = st.meta.privacy.epsilon_after_secure(&params, 1e-5).unwrap();
    record_secure_contribution(&mut st, &secure, 1, 1234).unwrap();
    assert!((st.meta.privacy.epsilon() - shown).abs() < 1e-9 && shown > before, "{before} → {shown}");
    assert_eq!(st.meta.privacy.secure_rounds.len(), 1);
}

fn ids_for_secure() -> Vec<String> {
    ["paris", "rome", "x1", "moon", "x2", "football", "x3", "x4", "ship", "x5"].iter().map(|s| s.to_string()).collect()
}

#[test]
fn applying_a_global_model_sets_federated_columns_only() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    let d = enc.dim() as u32;
    let ids = vec!["rome".to_string(), "zzz".to_string()];
    let mut g = GlobalModel::initial("demo", FederationMode::Shared, d, 2, Some(ids));
    g.version = 4;
    for t in &mut g.tensors {
        if t.name == "head.bias" {
            t.data = vec![5.0, 6.0];
        }
    }
    st.apply_global(&g).unwrap();
    let rome = st.docs.iter().position(|x| x.id == "rome").unwrap();
    assert_eq!(st.model.head_b[rome], 5.0);
    assert_eq!(st.model.head_b.iter().filter(|b| **b != 0.0).count(), 1);
    assert_eq!(st.meta.global.as_ref().unwrap().version, 4);
    assert_eq!(st.model, st.base);
}

#[test]
fn search_survives_a_restore_from_the_persisted_parts() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    block(st.train(&enc, &TrainOptions { epochs: Some(5), ..Default::default() }, &mut |_| true)).unwrap();
    st.record_click("the king", "book").unwrap();
    let mut before = Vec::new();
    for m in [Method::Car, Method::Mips, Method::Bm25, Method::Hybrid] {
        before.push(block(st.search(&enc, "capital of France", 5, m)).unwrap());
    }
    let docs = st.docs.clone();
    let emb = fedsearch_client::engine::f32s_from_bytes(&st.emb_bytes());
    let weights = st.weights_bytes().unwrap();
    let meta: fedsearch_client::engine::Meta = serde_json::from_str(&serde_json::to_string(&st.meta).unwrap()).unwrap();
    let mut restored = State::restore(enc.dim(), docs, emb, Some(&weights), Some(meta)).unwrap();
    for (i, m) in [Method::Car, Method::Mips, Method::Bm25, Method::Hybrid].into_iter().enumerate() {
        assert_eq!(block(restored.search(&enc, "capital of France", 5, m)).unwrap(), before[i]);
    }
    assert_eq!(restored.meta.clicks.len(), 1);
    assert_eq!(before[2][0].id, "paris", "BM25 puts Paris first: {:?}", before[2]);
    // A store of another width is refused.
    let e = State::restore(enc.dim() + 1, vec![], vec![], None, Some(restored.meta.clone())).err().unwrap();
    assert!(e.message.contains("width"), "{e}");
}

#[test]
fn documents_are_converted_chunked_and_deduplicated() {
    let enc = encoder();
    let mut st = State::empty(enc.dim());
    let long = (0..40).map(|i| format!("Sentence number {i} is about the city.")).collect::<Vec<_>>().join(" ");
    let docs = prepare_documents(
        vec![
            fedsearch_client::engine::NewDoc { id: None, title: "Long".into(), text: long },
            fedsearch_client::engine::NewDoc { id: None, title: "".into(), text: "<p>Hello <b>world</b></p>".into() },
        ],
        TextKind::Html,
    )
    .unwrap();
    assert!(docs.len() >= 3, "{}", docs.len());
    assert!(docs[1].id.ends_with("#2"));
    assert_eq!(docs.last().unwrap().text, "Hello world");
    let n = block(st.add_documents(&enc, docs.clone(), &mut |_, _| {})).unwrap();
    assert_eq!(n, docs.len());
    assert_eq!(block(st.add_documents(&enc, docs, &mut |_, _| {})).unwrap(), 0, "same ids are not added twice");
    assert_eq!(st.model.n_docs(), n);
}

/// Empty, binary and oversized files are refused before anything is embedded, with a message
/// naming each; the good documents of that batch are not added either (nothing half-done).
#[test]
fn empty_binary_and_oversized_documents_are_refused_by_name() {
    use fedsearch_client::engine::NewDoc;
    use fedsearch_core::document::MAX_DOCUMENT_BYTES;
    let doc = |title: &str, text: String| NewDoc { id: None, title: title.into(), text };
    let png_as_text =
        String::from_utf8_lossy(&[0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0xff, 0xfe, 0xfd, 0x9c, 0x80, 0x81, 0x82])
            .repeat(20);
    let cases = [
        (doc("empty", "   \n ".into()), "\"empty\" is empty"),
        (doc("tags only", "<p> </p>".into()), "\"tags only\" is empty"),
        (doc("nul", "text\0with a NUL".into()), "\"nul\" contains binary data"),
        (doc("picture", png_as_text), "\"picture\" does not look like text"),
        (doc("huge", "word ".repeat(MAX_DOCUMENT_BYTES / 5 + 1)), "\"huge\" is 5.0 MiB"),
        (doc("", "\u{1}\u{2}\u{3} abc".into()), "document 2 does not look like text"),
    ];
    for (bad, needle) in cases {
        let good = doc("Good", "A perfectly good document about a river.".into());
        let e = prepare_documents(vec![good, bad], TextKind::Html).unwrap_err();
        assert!(e.message.contains(needle), "expected {needle:?} in {e}");
        assert!(e.message.starts_with("nothing was added"), "{e}");
    }
    // Ordinary text with a few odd characters (tabs, a form feed, one replacement char in a long
    // text) is fine.
    let ok = format!("Tabs\tand a form feed\u{0C} here. {} \u{FFFD}", "plain words ".repeat(20));
    assert_eq!(prepare_documents(vec![doc("ok", ok)], TextKind::Text).unwrap().len(), 1);
}

/// BM25 lists only documents that share a word with the query: no padding with zero scores.
#[test]
fn bm25_results_have_evidence() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    let hits = block(st.search(&enc, "bread", 10, Method::Bm25)).unwrap();
    assert_eq!(hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["rome"], "{hits:?}");
    assert!(block(st.search(&enc, "xylophone quasar", 10, Method::Bm25)).unwrap().is_empty());
    // The dense methods rank every document.
    assert_eq!(block(st.search(&enc, "xylophone quasar", 10, Method::Mips)).unwrap().len(), 8);
}

/// Removing a document takes its passages, embedding, head columns (trained and base) and
/// clicks with it; the other documents keep their trained columns.
#[test]
fn removing_a_document_takes_everything_of_it_and_keeps_the_rest() {
    let enc = encoder();
    let mut st = state_with_corpus(&enc);
    st.record_click("capital of italy", "rome").unwrap();
    st.record_click("capital of france", "paris").unwrap();
    let opts = TrainOptions { epochs: Some(3), holdout_fraction: Some(0.0), ..Default::default() };
    block(st.train(&enc, &opts, &mut |_| true)).unwrap();
    let col = |st: &State, id: &str| {
        let j = st.docs.iter().position(|d| d.id == id).unwrap();
        (st.model.column(j), st.model.head_b[j])
    };
    let paris_before = col(&st, "paris");
    let list = st.document_list();
    assert_eq!(list.len(), 8);
    assert_eq!(list.iter().find(|d| d.id == "rome").map(|d| d.passages), Some(1));
    // Each document carries the time it was added (after 2026-01-01, not in the future).
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as f64;
    for d in &list {
        let t = d.added_ms.unwrap_or_else(|| panic!("{} has no date", d.id));
        assert!(t > 1_767_225_600_000.0 && t <= now_ms, "{}: {t}", d.id);
    }
    // A store written before dates were kept still reads; its documents have none.
    let old: fedsearch_client::engine::StoredDoc =
        serde_json::from_str(r#"{"id":"a","title":"A","text":"x"}"#).unwrap();
    assert_eq!(old.added_ms, None);

    assert_eq!(st.remove_document("rome"), 1);
    assert_eq!(st.docs.len(), 7);
    assert_eq!(st.doc_emb.len(), 7 * enc.dim());
    assert_eq!((st.model.n_docs(), st.base.n_docs()), (7, 7));
    assert_eq!(st.meta.clicks.len(), 1, "the click on rome goes with it");
    assert_eq!(col(&st, "paris"), paris_before, "other documents keep their trained columns");
    for m in [Method::Bm25, Method::Mips, Method::Car, Method::Hybrid] {
        let hits = block(st.search(&enc, "Rome capital of Italy bread", 8, m)).unwrap();
        assert!(hits.iter().all(|h| h.id != "rome"), "{m:?}: {hits:?}");
    }
    assert_eq!(st.remove_document("rome"), 0);
    assert_eq!(st.document_list().len(), 7);
}

/// The page's training options are overrides of core's one recipe: absent fields keep it,
/// unknown fields and values training cannot use are refused with a message.
#[test]
fn train_options_override_the_recipe_and_refuse_nonsense() {
    use fedsearch_core::train::TrainConfig;
    let parse = |json: &str| serde_json::from_str::<TrainOptions>(json);
    let head = parse(r#"{"mode": "head"}"#).unwrap().config().unwrap();
    assert_eq!(format!("{head:?}"), format!("{:?}", TrainConfig::recipe(TrainMode::Head)));
    let e2e = parse(r#"{"mode": "adapter+head", "epochs": 3}"#).unwrap();
    assert_eq!(e2e.mode(), TrainMode::AdapterHead);
    let cfg = e2e.config().unwrap();
    assert_eq!((cfg.epochs, cfg.batch_size), (3, TrainConfig::recipe(TrainMode::AdapterHead).batch_size));
    assert!(parse(r#"{"mode": "everything"}"#).is_err(), "an unknown mode");
    assert!(parse(r#"{"epoch": 3}"#).is_err(), "a misspelt field is an error, not a default");
    for (json, says) in [
        (r#"{"epochs": 0}"#, "at least 1"),
        (r#"{"headLr": -1}"#, "headLr must be a number > 0"),
        (r#"{"headPull": -0.5}"#, "headPull must be a number ≥ 0"),
        (r#"{"holdoutFraction": 1.5}"#, "holdoutFraction must be in [0, 1)"),
    ] {
        let e = parse(json).unwrap().config().unwrap_err();
        assert!(e.message.contains(says), "{json}: {e}");
    }
}
