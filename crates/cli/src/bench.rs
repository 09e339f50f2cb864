//! `fedsearch bench encode`: encoder throughput (sentences/s) at batch sizes 1 and 32 on the
//! same sentences in the same process, reported with their ratio. `fedsearch bench throughput`:
//! the browser benchmark page's workload (`fedsearch_core::bench`) natively.

use crate::error::{CliError, CliResult, read_input};
use burn::prelude::*;
use fedsearch_core::data::Corpus;
use fedsearch_core::model::{ModelFiles, SentenceEncoder};
use std::path::Path;
use web_time::Instant;

/// The first four of the throughput benchmark's sentences.
const SAMPLE: &[&str] = fedsearch_core::bench::SAMPLE.split_at(4).0;

/// Measures and prints sentences/s for each batch size; returns `(batch, sentences/s)`.
pub fn encode(model: &Path, corpus: Option<&Path>, n: usize, max_len: usize) -> CliResult<Vec<(usize, f64)>> {
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
    for batch in [1usize, 32] {
        let t = Instant::now();
        pollster::block_on(enc.embed(&refs, None, batch, &mut |_, _| {}))?;
        let rate = refs.len() as f64 / t.elapsed().as_secs_f64();
        println!("batch {batch:>3}: {rate:8.1} sentences/s ({} sentences)", refs.len());
        out.push((batch, rate));
    }
    println!("batch 32 / batch 1 throughput ratio: {:.2}", out[1].1 / out[0].1);
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
