//! Tokenizer wrapper: loads a Hugging Face `tokenizer.json` from bytes (the browser has no
//! files), disables the file's built-in fixed padding/truncation (all-MiniLM ships "pad to 128"),
//! truncates to our own maximum and pads each batch only to its longest member.

use crate::error::{CoreError, Result};
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

/// A batch of token ids ready for the encoder: row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub mask: Vec<i64>,
    pub batch: usize,
    pub seq_len: usize,
}

/// A BERT WordPiece tokenizer with our truncation and padding policy.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
    max_len: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` bytes; `max_len` counts the special tokens.
    /// `expected_vocab` is the model's `vocab_size`: a tokenizer of another model is refused.
    pub fn from_bytes(bytes: &[u8], max_len: usize, expected_vocab: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| CoreError::Tokenizer(format!("tokenizer.json is unreadable: {e}")))?;
        let vocab = inner.get_vocab_size(true);
        // Some models pad their embedding table past the tokenizer's vocabulary; a tokenizer that
        // is larger, or much smaller, than the table belongs to another model.
        if vocab > expected_vocab || vocab * 100 < expected_vocab * 95 {
            return Err(CoreError::Tokenizer(format!(
                "tokenizer.json has {vocab} tokens but the model's config.json says vocab_size \
                 {expected_vocab}: the tokenizer belongs to another model"
            )));
        }
        let pad_id = inner.token_to_id("[PAD]").or_else(|| inner.token_to_id("<pad>")).unwrap_or(0);
        if max_len < 3 {
            return Err(CoreError::Tokenizer(format!("max_len {max_len} is too small")));
        }
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| CoreError::Tokenizer(format!("cannot set truncation: {e}")))?;
        inner.with_padding(None);
        Ok(Self { inner, pad_id, max_len })
    }

    /// The maximum sequence length, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Token ids of one text, with `[CLS]`/`[SEP]`.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, true).map_err(|e| CoreError::Tokenizer(format!("cannot tokenize: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Tokenizes a batch and pads it to its longest member.
    pub fn batch(&self, texts: &[&str]) -> Result<TokenBatch> {
        let mut rows = Vec::with_capacity(texts.len());
        for t in texts {
            rows.push(self.ids(t)?);
        }
        Ok(self.pad(&rows))
    }

    /// Already tokenized rows (from [`Self::ids`]) padded to the longest of them.
    pub fn pad(&self, rows: &[Vec<u32>]) -> TokenBatch {
        let seq_len = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(rows.len() * seq_len);
        let mut mask = Vec::with_capacity(rows.len() * seq_len);
        for row in rows {
            for j in 0..seq_len {
                match row.get(j) {
                    Some(&id) => {
                        ids.push(id as i64);
                        mask.push(1);
                    }
                    None => {
                        ids.push(self.pad_id as i64);
                        mask.push(0);
                    }
                }
            }
        }
        TokenBatch { ids, mask, batch: rows.len(), seq_len }
    }
}
