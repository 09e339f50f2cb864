//! `fedsearch bench encode`: encoder throughput (sentences/s) at several batch sizes on the
//! same sentences in the same process, with the padding each batch size adds (real tokens vs
//! positions computed); `scripts/bench-vs-ort.sh` puts it beside ONNX Runtime. `fedsearch bench throughput`:
//! the browser benchmark page's workload (`fedsearch_core::bench`) natively.

use crate::error::{CliError, CliResult, read_input};
use burn::prelude::*;
use fedsearch_core::data::Corpus;
use fedsearch_core::model::{ModelFiles, SentenceEncoder};
use std::path::Path;
use web_time::Instant;

/// The first four of the throughput benchmark's sentences.
const SAMPLE: &[&str] = fedsearch_core::bench::SAMPLE.split_at(4).0;

/// One batch size's measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncodeRate {
    pub engine: &'static str,
    /// Encoders side by side.
    pub threads: usize,
    pub batch: usize,
    pub sentences: usize,
    pub seconds: f64,
    pub sentences_per_s: f64,
    /// Tokens of text (special tokens included) and positions computed with padding.
    pub real_tokens: usize,
    pub padded_tokens: usize,
}

/// Measures and prints sentences/s for each batch size (one JSON line each, then a readable
/// summary), with the padding each batch size costs.
pub fn encode(
    model: &Path,
    corpus: Option<&Path>,
    n: usize,
    max_len: usize,
    batches: &[usize],
    threads: usize,
) -> CliResult<Vec<EncodeRate>> {
    if batches.is_empty() || batches.contains(&0) {
        return Err(CliError::Input("--batches needs batch sizes of at least 1, e.g. 1,32".into()));
    }
    if threads == 0 {
        return Err(CliError::Input("--threads needs at least 1".into()));
    }
    let device = Device::flex();
    let enc = SentenceEncoder::load(&ModelFiles::read_dir(model)?, &device, max_len)?;
    let texts: Vec<String> = match corpus {
        Some(p) => Corpus::from_jsonl(&read_input(p, "corpus")?)?.full_texts().into_iter().take(n).collect(),
        None => SAMPLE.iter().cycle().take(n).map(|s| s.to_string()).collect(),
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Warm-up so that one-off allocation does not land in the first measurement.
    pollster::block_on(enc.embed(&refs[..refs.len().min(4)], None, 4, &mut |_, _| {}))?;
    let mut out = Vec::new();
    for &batch in batches {
        let plan = enc.plan_batches(&refs, batch)?;
        let t = Instant::now();
        crate::embed::embed_parallel(&enc, &refs, None, batch, threads, &|_| {})?;
        let seconds = t.elapsed().as_secs_f64();
        let rate = EncodeRate {
            engine: "fedsearch",
            threads,
            batch,
            sentences: refs.len(),
            seconds,
            sentences_per_s: refs.len() as f64 / seconds,
            real_tokens: plan.real_tokens(),
            padded_tokens: plan.padded_tokens(),
        };
        println!("{}", serde_json::to_string(&rate).unwrap_or_default());
        out.push(rate);
    }
    for r in &out {
        println!(
            "batch {:>3}, {} thread(s): {:8.1} sentences/s, {:8.0} real tokens/s ({} sentences, {} real tokens, {} with padding: +{:.0} %)",
            r.batch,
            r.threads,
            r.sentences_per_s,
            r.real_tokens as f64 / r.seconds,
            r.sentences,
            r.real_tokens,
            r.padded_tokens,
            100.0 * (r.padded_tokens as f64 / r.real_tokens.max(1) as f64 - 1.0)
        );
    }
    Ok(out)
}

/// Runs `fedsearch_core::bench::throughput` on the flex CPU backend, prints it, and writes it as
/// JSON (with `"backend": "native"`) when `json` is given.
pub fn throughput(
    model: &Path,
    cfg: &fedsearch_core::bench::ThroughputConfig,
    max_len: usize,
    json: Option<&Path>,
) -> CliResult<fedsearch_core::bench::Throughput> {
    let device = Device::flex();
    let enc = SentenceEncoder::load(&ModelFiles::read_dir(model)?, &device, max_len)?;
    let t = pollster::block_on(fedsearch_core::bench::throughput(&enc, cfg, &mut |s| eprintln!("{s}…")))?;
    println!(
        "native (flex CPU), {} sentences, max_len {}: encoder {:.1} sentences/s, head training {:.0} examples/s, adapter+head training {:.1} examples/s",
        t.sentences, t.max_len, t.encode_sentences_per_s, t.head_examples_per_s, t.adapter_examples_per_s
    );
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_vec_pretty(&t.to_json("native")).unwrap_or_default())
            .map_err(|e| CliError::Io(format!("cannot write {}: {e}", p.display())))?;
        println!("wrote {}", p.display());
    }
    Ok(t)
}
