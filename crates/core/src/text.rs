//! Plain-text helpers shared by BM25 and pseudo-query generation: word splitting with English
//! stop words and stemming (close to Lucene's English analyzer), and sentence splitting.

use rust_stemmers::{Algorithm, Stemmer};
use std::sync::OnceLock;

/// Lucene's English stop words.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
];

fn stemmer() -> &'static Stemmer {
    static S: OnceLock<Stemmer> = OnceLock::new();
    S.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// Lower-cased alphanumeric words, in order.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Index terms: words without stop words, stemmed.
pub fn terms(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| stemmer().stem(&w).into_owned())
        .collect()
}

/// Whether a lower-cased word is a stop word.
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// Sentences: split after `.`, `!` or `?` followed by white space and an upper-case letter or
/// digit (so "U.S. Army" and "3.5" stay whole).
pub fn sentences(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '.' | '!' | '?') && i + 2 < chars.len() && chars[i + 1].is_whitespace() {
            let next = chars[i + 2];
            let prev_is_initial = i >= 2 && chars[i - 1].is_uppercase() && !chars[i - 2].is_alphanumeric();
            if (next.is_uppercase() || next.is_ascii_digit()) && !prev_is_initial {
                let s: String = chars[start..=i].iter().collect();
                if !s.trim().is_empty() {
                    out.push(s.trim().to_string());
                }
                start = i + 2;
                i += 2;
                continue;
            }
        }
        i += 1;
    }
    let tail: String = chars[start.min(chars.len())..].iter().collect();
    if !tail.trim().is_empty() {
        out.push(tail.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_boundaries_only() {
        let s = sentences("Paris is in France. It has 2.1 million people. The U.S. Army came. Done");
        assert_eq!(s, vec!["Paris is in France.", "It has 2.1 million people.", "The U.S. Army came.", "Done"]);
    }

    #[test]
    fn terms_drop_stop_words_and_stem() {
        assert_eq!(terms("The Running of the Dogs"), vec!["run", "dog"]);
    }
}
