//! Shared by the native tests (`native.rs`) and the browser tests (`web.rs`): the tiny model,
//! a small corpus, and golden values computed NATIVELY (on burn's flex CPU backend) by
//! `native.rs::print_golden` — the browser must reproduce them on WebGPU and on its CPU.
#![allow(dead_code)]

use fedsearch_client::engine::NewDoc;
use fedsearch_core::model::ModelFiles;
use fedsearch_core::tiny::{TinyBertSpec, tiny_bert_files};

/// The tiny random BERT (hidden 32, 2 layers, seed 1) of core's `tiny.rs`.
pub fn tiny_files() -> ModelFiles {
    tiny_bert_files(&TinyBertSpec::default()).expect("tiny model")
}

pub const GOLDEN_TEXT: &str = "The city of Paris is the capital of France!";
/// Token ids of [`GOLDEN_TEXT`] by the tiny model's tokenizer (native `tokenizers`).
pub const GOLDEN_IDS: &[u32] = &[2, 5, 13, 6, 35, 9, 5, 33, 6, 34, 129, 3];

pub const POOL_TEXTS: [&str; 2] = ["A man is eating food.", "The girl is carrying a baby."];
/// First 8 values of each pooled, normalised embedding of [`POOL_TEXTS`] (native flex CPU).
pub const GOLDEN_POOLED: [[f32; 8]; 2] = [
    [0.10383089, 0.19254631, 0.14253591, -0.20589447, -0.016985534, -0.29647148, 0.20015535, -0.17309915],
    [0.15895624, 0.22380151, 0.11546448, -0.16305082, -0.019556204, -0.24238071, 0.21432737, -0.20545681],
];

/// A small corpus whose documents are easy to tell apart with the tiny vocabulary.
pub fn corpus() -> Vec<NewDoc> {
    let d = |id: &str, title: &str, text: &str| NewDoc { id: Some(id.into()), title: title.into(), text: text.into() };
    vec![
        d(
            "paris",
            "Paris",
            "Paris is the capital of France. The city is on a river. Paris has art and music and food.",
        ),
        d("rome", "Rome", "Rome is the capital of Italy. The city was the capital of a king. Rome has art and bread."),
        d("moon", "Moon", "The moon is a piece of a planet. The sun and the moon and a star. The moon is in the sky."),
        d(
            "football",
            "Football club",
            "A football club is a team. The team plays a game. The club has a song and a band.",
        ),
        d("ship", "Ship", "A ship is on the sea. The ship was in the war. A bird and a ship on the sea."),
        d("dog", "Dog and cat", "The dog is eating food. A cat and a dog. The girl is carrying a dog and a cat."),
        d("book", "Book", "A book has an author. The author of the book was a man. The book is about a king."),
        d("film", "Film", "The film is about music. A film and a song. The film of the band was a game."),
    ]
}
