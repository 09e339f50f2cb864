//! A tiny random BERT in the Hugging Face file layout (config.json, model.safetensors,
//! tokenizer.json), generated from a seed. Tests that need no real weights use it, in native and
//! browser builds alike, so they run in seconds and never download anything.

use crate::checkpoint::{HostTensor, write_safetensors};
use crate::error::Result;
use crate::model::ModelFiles;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::HashMap;

/// Shape of the tiny model.
#[derive(Debug, Clone)]
pub struct TinyBertSpec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub seed: u64,
}

impl Default for TinyBertSpec {
    fn default() -> Self {
        Self { hidden: 32, layers: 2, heads: 4, intermediate: 64, max_positions: 64, seed: 1 }
    }
}

const SPECIALS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
const WORDS: &[&str] = &[
    "the", "of", "and", "in", "is", "a", "to", "was", "city", "river", "music", "war", "king", "film", "game", "bird",
    "ship", "sea", "star", "art", "food", "man", "eating", "piece", "bread", "girl", "baby", "carrying", "capital",
    "france", "paris", "rome", "italy", "dog", "cat", "planet", "moon", "sun", "book", "author", "football", "club",
    "team", "song", "band",
];

/// The tiny model's vocabulary, in id order.
pub fn tiny_vocab() -> Vec<String> {
    let mut v: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    v.extend(WORDS.iter().map(|s| s.to_string()));
    for c in ('a'..='z').chain('0'..='9') {
        v.push(c.to_string());
        v.push(format!("##{c}"));
    }
    for p in [".", ",", "'", "-", "(", ")", ":", ";", "!", "?", "\"", "/"] {
        v.push(p.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    v.retain(|t| seen.insert(t.clone()));
    v
}

/// Generates the three files of a tiny random BERT.
pub fn tiny_bert_files(spec: &TinyBertSpec) -> Result<ModelFiles> {
    let vocab = tiny_vocab();
    let config = json!({
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": spec.hidden, "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads, "intermediate_size": spec.intermediate,
        "max_position_embeddings": spec.max_positions, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "vocab_size": vocab.len(), "pad_token_id": 0,
        "position_embedding_type": "absolute"
    });
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut tensors = Vec::new();
    let mut rand_t = |name: String, shape: Vec<usize>, rng: &mut ChaCha8Rng| {
        let n = shape.iter().product();
        let data = (0..n).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        tensors.push(HostTensor { name, shape, data });
    };
    let (h, i) = (spec.hidden, spec.intermediate);
    rand_t("embeddings.word_embeddings.weight".into(), vec![vocab.len(), h], &mut rng);
    rand_t("embeddings.position_embeddings.weight".into(), vec![spec.max_positions, h], &mut rng);
    rand_t("embeddings.token_type_embeddings.weight".into(), vec![2, h], &mut rng);
    let mut ln = vec!["embeddings.LayerNorm".to_string()];
    for l in 0..spec.layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            rand_t(format!("{p}.{name}.weight"), vec![out, inp], &mut rng);
            rand_t(format!("{p}.{name}.bias"), vec![out], &mut rng);
        }
        ln.push(format!("{p}.attention.output.LayerNorm"));
        ln.push(format!("{p}.output.LayerNorm"));
    }
    for name in ln {
        tensors.push(HostTensor { name: format!("{name}.weight"), shape: vec![h], data: vec![1.0; h] });
        tensors.push(HostTensor { name: format!("{name}.bias"), shape: vec![h], data: vec![0.0; h] });
    }
    let safetensors = write_safetensors(&tensors, HashMap::new())?;
    Ok(ModelFiles {
        config_json: serde_json::to_vec_pretty(&config).expect("json"),
        safetensors,
        tokenizer_json: tokenizer_json(&vocab).into_bytes(),
    })
}

/// A BERT WordPiece `tokenizer.json` for a vocabulary (lower-casing, [CLS] … [SEP]).
fn tokenizer_json(vocab: &[String]) -> String {
    let ids: serde_json::Map<String, serde_json::Value> =
        vocab.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let added: Vec<_> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": ids}
    })
    .to_string()
}
