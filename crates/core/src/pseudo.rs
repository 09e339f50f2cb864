//! Training pairs without labels: pseudo-queries drawn from each document — its title, its
//! sentences, its first sentence with the title taken out (like a question that does not name
//! its answer), and short keyword spans — deterministic under a seed.

use crate::data::Corpus;
use crate::text::{is_stop_word, sentences, words};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to generate for each document.
#[derive(Debug, Clone)]
pub struct PseudoQueryConfig {
    pub seed: u64,
    /// Sentences with fewer words are skipped.
    pub min_words: usize,
    /// Sentences longer than this are cut to their first `max_words` words.
    pub max_words: usize,
    /// At most this many sentences per document.
    pub max_sentences: usize,
    /// Keyword spans (3 to 6 content words) per document.
    pub spans_per_doc: usize,
    pub include_title: bool,
    pub include_title_masked: bool,
}

impl Default for PseudoQueryConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            min_words: 4,
            max_words: 32,
            max_sentences: 8,
            spans_per_doc: 2,
            include_title: true,
            include_title_masked: true,
        }
    }
}

/// `(query, document position)` pairs for every document of the corpus.
pub fn pseudo_queries(corpus: &Corpus, cfg: &PseudoQueryConfig) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (pos, doc) in corpus.docs.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ (pos as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut qs: Vec<String> = Vec::new();
        if cfg.include_title && !doc.title.trim().is_empty() {
            qs.push(doc.title.trim().to_string());
        }
        let sents = sentences(&doc.text);
        for s in sents.iter().take(cfg.max_sentences) {
            let ws: Vec<&str> = s.split_whitespace().collect();
            if ws.len() >= cfg.min_words {
                qs.push(ws[..ws.len().min(cfg.max_words)].join(" "));
            }
        }
        if cfg.include_title_masked
            && let Some(first) = sents.first()
        {
            let masked = mask_title(first, &doc.title);
            if masked.split_whitespace().count() >= cfg.min_words.min(3) {
                qs.push(masked);
            }
        }
        let content: Vec<String> = words(&doc.text).into_iter().filter(|w| !is_stop_word(w)).collect();
        for _ in 0..cfg.spans_per_doc {
            if content.len() < 3 {
                break;
            }
            let len = rng.random_range(3..=6usize).min(content.len());
            let start = rng.random_range(0..=content.len() - len);
            qs.push(content[start..start + len].join(" "));
        }
        qs.shuffle(&mut rng);
        qs.dedup();
        out.extend(qs.into_iter().map(|q| (q, pos)));
    }
    out
}

/// Longest whole-predicate category question, in words.
pub const QUESTION_MAX_WORDS: usize = 32;

/// Question-shaped pseudo-queries from each document's first sentence, "X is a Y …" →
/// "Which Y?" (Y cut at its first comma or relative clause) and "Which Y …?" (the whole
/// predicate, at most `max_words` words): what a person asks when they look for a kind of thing
/// ("which river in Africa …"). `(question, document position)`; documents whose first sentence
/// has no "is/was/are/were a/an/the" give none. Measured in crates/cli/QUALITY.md.
pub fn category_questions(corpus: &Corpus, max_words: usize) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (pos, doc) in corpus.docs.iter().enumerate() {
        out.extend(category_questions_of(&doc.text, max_words).into_iter().map(|q| (q, pos)));
    }
    out
}

/// The category questions of one text (see [`category_questions`]): zero, one or two.
pub fn category_questions_of(text: &str, max_words: usize) -> Vec<String> {
    let mut out = Vec::new();
    let Some(first) = sentences(text).into_iter().next() else { return out };
    let Some(predicate) = copula_predicate(&first) else { return out };
    let short = cut_at_clause(&predicate);
    let short_words = short.split_whitespace().count();
    if (1..=12).contains(&short_words) {
        out.push(format!("Which {short}?"));
    }
    let full: Vec<&str> = predicate.split_whitespace().collect();
    if full.len() > short_words && full.len() <= max_words {
        out.push(format!("Which {}?", full.join(" ")));
    }
    out
}

/// What follows the first "is/was/are/were" + "a/an/the/one of the" of a sentence (within its
/// first 20 words), without the final full stop.
fn copula_predicate(sentence: &str) -> Option<String> {
    let ws: Vec<&str> = sentence.split_whitespace().collect();
    let verb = ws.iter().take(20).position(|w| matches!(*w, "is" | "was" | "are" | "were"))?;
    if verb == 0 {
        return None;
    }
    let rest = &ws[verb + 1..];
    let skip = match rest {
        ["one", "of", "the", ..] => 3,
        [a, ..] if matches!(*a, "a" | "an" | "the") => 1,
        _ => return None,
    };
    let text = rest[skip..].join(" ");
    let text = text.trim_end_matches(['.', ';']).trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The predicate up to its first comma or relative clause ("city in France, located …" →
/// "city in France").
fn cut_at_clause(predicate: &str) -> String {
    let mut end = predicate.find(',').unwrap_or(predicate.len());
    for marker in [" that ", " which ", " who ", " where ", " in which ", " located ", " known "] {
        if let Some(i) = predicate.find(marker) {
            end = end.min(i);
        }
    }
    predicate[..end].trim().to_string()
}

/// The sentence without the title's words and without a leading "is/was a/an/the".
fn mask_title(sentence: &str, title: &str) -> String {
    let title_words: Vec<String> = words(title);
    let kept: Vec<&str> = sentence
        .split_whitespace()
        .filter(|w| {
            let lw: String = w.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
            lw.is_empty() || !title_words.contains(&lw)
        })
        .collect();
    let mut i = 0;
    while i < kept.len()
        && matches!(
            kept[i].to_lowercase().trim_matches(|c: char| !c.is_alphanumeric()),
            "is" | "was" | "are" | "were" | "a" | "an" | "the" | ""
        )
    {
        i += 1;
    }
    kept[i..].join(" ")
}

/// Appends labelled pairs (search clicks: a real question and the document it led to) to the
/// training pairs, each `weight` times (at least once), so that one click outweighs one
/// pseudo-query. Shared by the tab and `fedsearch eval`.
pub fn add_clicks(pairs: &mut Vec<(String, usize)>, clicks: &[(String, usize)], weight: usize) {
    for _ in 0..weight.max(1) {
        pairs.extend(clicks.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Document;

    fn corpus() -> Corpus {
        Corpus::new(vec![Document {
            id: "Paris".into(),
            title: "Paris".into(),
            text: "Paris is the capital and largest city of France. It hosts the Louvre museum and \
                   the Eiffel Tower. Tiny."
                .into(),
        }])
        .unwrap()
    }

    #[test]
    fn category_questions_come_from_the_first_sentence() {
        let qs = category_questions(&corpus(), 32);
        assert_eq!(
            qs,
            vec![("Which capital and largest city of France?".to_string(), 0),],
            "no comma or clause: the short and the full predicate are the same, given once"
        );
        let c = Corpus::new(vec![
            Document {
                id: "a".into(),
                title: "Algiers".into(),
                text: "Algiers is the capital city of Algeria, located on the Mediterranean Sea. More.".into(),
            },
            Document { id: "b".into(), title: "B".into(), text: "Nothing to see here today at all.".into() },
            Document {
                id: "c".into(),
                title: "C".into(),
                text: "Oak trees are one of the tallest trees that grow.".into(),
            },
        ])
        .unwrap();
        let qs = category_questions(&c, 32);
        assert_eq!(
            qs,
            vec![
                ("Which capital city of Algeria?".to_string(), 0),
                ("Which capital city of Algeria, located on the Mediterranean Sea?".to_string(), 0),
                ("Which tallest trees?".to_string(), 2),
                ("Which tallest trees that grow?".to_string(), 2),
            ]
        );
    }

    #[test]
    fn deterministic_under_seed_and_varies_with_it() {
        let cfg = PseudoQueryConfig::default();
        let a = pseudo_queries(&corpus(), &cfg);
        assert_eq!(a, pseudo_queries(&corpus(), &cfg));
        let b = pseudo_queries(&corpus(), &PseudoQueryConfig { seed: 99, ..cfg });
        assert_ne!(a, b);
    }

    #[test]
    fn contains_title_sentences_and_masked_first_sentence() {
        let qs: Vec<String> = pseudo_queries(&corpus(), &PseudoQueryConfig::default())
            .into_iter()
            .map(|(q, d)| {
                assert_eq!(d, 0);
                q
            })
            .collect();
        assert!(qs.contains(&"Paris".to_string()));
        assert!(qs.contains(&"It hosts the Louvre museum and the Eiffel Tower.".to_string()));
        assert!(qs.contains(&"capital and largest city of France.".to_string()), "{qs:?}");
        assert!(!qs.iter().any(|q| q == "Tiny."), "short sentences are skipped");
    }
}
