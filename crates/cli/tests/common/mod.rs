//! Shared fixtures of the CLI integration tests: a tiny random BERT written in the Hugging Face
//! layout and an 8-document corpus with one query per document.
#![allow(dead_code)]

use fedsearch_core::tiny::{TinyBertSpec, tiny_bert_files};
use std::path::Path;

const DOCS: &[(&str, &str)] = &[
    ("paris", "paris is the capital of france. the city of paris and the river. paris was a city of art and music."),
    ("rome", "rome is the capital of italy. the city of rome was the capital of a king. rome and the sea and the sun."),
    ("moon", "the moon is a piece of the sky. the moon and the sun and the star. the moon was a planet to the man."),
    ("dog", "the dog is eating the bread. a dog and a cat and a baby. the dog was carrying a piece of food."),
    ("football", "football is a game of the team. the football club and the team. the club was a team of the city."),
    ("band", "the band is a band of music. the song of the band and the music. the band was a song to the girl."),
    ("ship", "the ship is in the sea. the ship and the war and the king. the ship was carrying the man to the sea."),
    ("book", "the book is a book of the author. the author and the book and the film. the book was a film of art."),
];

const QUERIES: &[(&str, &str)] = &[
    ("capital of france", "paris"),
    ("capital of italy", "rome"),
    ("moon and star", "moon"),
    ("dog eating bread", "dog"),
    ("football club team", "football"),
    ("song of the band", "band"),
    ("ship in the sea", "ship"),
    ("author of the book", "book"),
];

/// Writes `model/`, `corpus.jsonl` and `queries.jsonl` into `dir`.
pub fn setup(dir: &Path) {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let files = tiny_bert_files(&TinyBertSpec::default()).unwrap();
    std::fs::write(model.join("config.json"), &files.config_json).unwrap();
    std::fs::write(model.join("model.safetensors"), &files.safetensors).unwrap();
    std::fs::write(model.join("tokenizer.json"), &files.tokenizer_json).unwrap();
    let corpus: String =
        DOCS.iter().map(|(t, x)| serde_json::json!({"id": t, "title": t, "text": x}).to_string() + "\n").collect();
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    let queries: String =
        QUERIES.iter().map(|(q, d)| serde_json::json!({"query": q, "doc_id": d}).to_string() + "\n").collect();
    std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
}
