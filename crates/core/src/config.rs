//! The BERT hyper-parameters read from a Hugging Face `config.json` (all-MiniLM-L6-v2, bge-small,
//! e5-small and other BERT-style encoders share this shape).

use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};

/// The subset of a Hugging Face BERT `config.json` the encoder needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_type_vocab() -> usize {
    2
}
fn default_ln_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

impl BertConfig {
    /// Parses and checks `config.json` bytes.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        let cfg: BertConfig = serde_json::from_slice(bytes)
            .map_err(|e| CoreError::Config(format!("config.json is not a BERT config: {e}")))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Rejects configurations this encoder cannot run, with the reason.
    pub fn check(&self) -> Result<()> {
        if let Some(t) = &self.model_type
            && !matches!(t.as_str(), "bert" | "roberta" | "xlm-roberta")
        {
            return Err(CoreError::Config(format!("model_type {t:?} is not a BERT-style encoder")));
        }
        if let Some(p) = &self.position_embedding_type
            && p != "absolute"
        {
            return Err(CoreError::Config(format!(
                "position_embedding_type {p:?} is not supported (only \"absolute\")"
            )));
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_new" | "gelu_pytorch_tanh") {
            return Err(CoreError::Config(format!("hidden_act {:?} is not supported", self.hidden_act)));
        }
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(CoreError::Config(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.vocab_size == 0 || self.max_position_embeddings == 0 || self.num_hidden_layers == 0 {
            return Err(CoreError::Config(
                "vocab_size, max_position_embeddings and num_hidden_layers must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
