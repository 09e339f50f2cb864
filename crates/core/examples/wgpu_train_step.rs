//! Diagnostic: a few adapter + head training steps of a model on native wgpu (e.g. lavapipe) and
//! on flex, printing the losses side by side (lavapipe: identical to flex within 1e-6).
//! `cargo run -p fedsearch-core --features wgpu --example wgpu_train_step -- models/all-MiniLM-L6-v2`
use burn::prelude::*;
use fedsearch_core::adapter::SoftEmbeddingAdapter;
use fedsearch_core::bench::sample_sentences;
use fedsearch_core::head::CarHead;
use fedsearch_core::model::{DEFAULT_MAX_LEN, ModelFiles, SentenceEncoder};
use fedsearch_core::train::{Retriever, TrainConfig, TrainInputs, train};

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let files = ModelFiles::read_dir(std::path::Path::new(&dir)).expect("model");
    let texts = sample_sentences(32);
    let targets: Vec<usize> = (0..32).collect();
    for (name, device) in
        [("wgpu", pollster::block_on(Device::wgpu_options().init_async()).expect("wgpu")), ("flex", Device::flex())]
    {
        let enc = SentenceEncoder::load(&files, &device, DEFAULT_MAX_LEN).unwrap();
        let d = enc.dim();
        let model =
            Retriever { adapter: SoftEmbeddingAdapter::identity(d, &device), head: CarHead::zeros(d, 32, &device) };
        let cfg = TrainConfig { epochs: 3, batch_size: 32, holdout_fraction: 0.0, ..Default::default() };
        let inputs = TrainInputs::Texts { encoder: &enc, texts: &texts };
        let r = pollster::block_on(train(model, inputs, &targets, &cfg, &device, &mut |p| {
            println!("{name}: step {} loss {}", p.step, p.loss);
            true
        }));
        println!("{name}: {:?}", r.map(|(_, rep)| rep.final_loss));
    }
}
