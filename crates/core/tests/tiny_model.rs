//! Model behaviour on the tiny random BERT: loading errors, adapter identity, the training loop
//! (head-only and adapter+head), frozen encoder weights and checkpoint round trips, and the CPU
//! backend's patched elementwise math (vendor/README.md) against f64 references.

use burn::optim::GradientsParams;
use burn::prelude::*;
use fedsearch_core::CoreError;
use fedsearch_core::adapter::SoftEmbeddingAdapter;
use fedsearch_core::checkpoint::{load_retriever, save_retriever};
use fedsearch_core::head::{CarHead, QuerySet, centroid_keys, cross_entropy, keys_towards};
use fedsearch_core::model::{ModelFiles, SentenceEncoder, read_f32};
use fedsearch_core::search::transpose;
use fedsearch_core::tiny::{TinyBertSpec, tiny_bert_files};
use fedsearch_core::train::{Retriever, TrainConfig, TrainInputs, start_margin, train};

fn tiny() -> (SentenceEncoder, Device) {
    let device = Device::flex();
    let files = tiny_bert_files(&TinyBertSpec::default()).unwrap();
    (SentenceEncoder::load(&files, &device, 64).unwrap(), device)
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

#[test]
fn bad_model_files_give_typed_errors() {
    let device = Device::flex();
    let good = tiny_bert_files(&TinyBertSpec::default()).unwrap();
    let corrupt = ModelFiles {
        config_json: good.config_json.clone(),
        safetensors: good.safetensors[..good.safetensors.len() / 2].to_vec(),
        tokenizer_json: good.tokenizer_json.clone(),
    };
    assert!(matches!(SentenceEncoder::load(&corrupt, &device, 64), Err(CoreError::Weights(_))));

    let other = tiny_bert_files(&TinyBertSpec { hidden: 16, heads: 2, ..Default::default() }).unwrap();
    let mismatched = ModelFiles {
        config_json: good.config_json.clone(),
        safetensors: other.safetensors.clone(),
        tokenizer_json: good.tokenizer_json.clone(),
    };
    match SentenceEncoder::load(&mismatched, &device, 64) {
        Err(CoreError::Weights(msg)) => assert!(msg.contains("shape"), "{msg}"),
        other => panic!("expected a shape error, got {:?}", other.err()),
    }

    let mut cfg: serde_json::Value = serde_json::from_slice(&good.config_json).unwrap();
    cfg["vocab_size"] = serde_json::json!(30522);
    let wrong_tok = ModelFiles {
        config_json: serde_json::to_vec(&cfg).unwrap(),
        safetensors: good.safetensors.clone(),
        tokenizer_json: good.tokenizer_json.clone(),
    };
    match SentenceEncoder::load(&wrong_tok, &device, 64) {
        Err(CoreError::Tokenizer(msg)) => assert!(msg.contains("another model"), "{msg}"),
        other => panic!("expected a tokenizer error, got {:?}", other.err()),
    }

    let bad_cfg = ModelFiles { config_json: b"{}".to_vec(), ..good };
    assert!(matches!(SentenceEncoder::load(&bad_cfg, &device, 64), Err(CoreError::Config(_))));
}

#[test]
fn identity_adapter_equals_frozen_model_and_batching_is_invariant() {
    let (enc, device) = tiny();
    let texts = ["the king of france", "a dog is eating bread in paris", "music"];
    let plain = block(enc.embed(&texts, None, 3, &mut |_, _| {})).unwrap();
    let ident = SoftEmbeddingAdapter::identity(enc.dim(), &device);
    let adapted = block(enc.embed(&texts, Some(&ident), 3, &mut |_, _| {})).unwrap();
    let one_by_one = block(enc.embed(&texts, None, 1, &mut |_, _| {})).unwrap();
    for ((a, b), c) in plain.iter().zip(&adapted).zip(&one_by_one) {
        assert!((a - b).abs() < 1e-6 && (a - c).abs() < 1e-5);
    }
    // A non-identity adapter does change the output: the test above can fail.
    let scaled = SoftEmbeddingAdapter::from_values(
        (0..enc.dim() * enc.dim()).map(|i| if i % (enc.dim() + 1) == 0 { 2.0 } else { 0.01 }).collect(),
        vec![0.1; enc.dim()],
        &device,
    );
    let changed = block(enc.embed(&texts, Some(&scaled), 3, &mut |_, _| {})).unwrap();
    assert!(plain.iter().zip(&changed).any(|(a, b)| (a - b).abs() > 1e-3));
    // Outputs are unit norm.
    for row in plain.chunks(enc.dim()) {
        let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4);
    }
}

/// `embed` batches texts by token count: every batch holds texts of neighbouring lengths, the
/// plan counts real and padded tokens as a hand count does, and the order of the output rows is
/// the order of the texts whatever the batching.
#[test]
fn batches_group_texts_of_similar_token_counts() {
    let (enc, _) = tiny();
    let texts = ["a b c d e f g h", "a", "a b c d", "a b", "a b c d e f", "a b c"];
    let lens: Vec<usize> = texts.iter().map(|t| enc.tokenizer.ids(t).unwrap().len()).collect();
    let plan = enc.plan_batches(&texts, 2).unwrap();
    let mut sorted = lens.clone();
    sorted.sort();
    let batch_lens: Vec<Vec<usize>> =
        plan.batches.iter().map(|(idx, _)| idx.iter().map(|&i| lens[i]).collect()).collect();
    assert_eq!(batch_lens.concat(), sorted, "batches follow token counts");
    // Hand count: each batch is padded to its longest member.
    let real: usize = lens.iter().sum();
    let padded: usize = sorted.chunks(2).map(|c| c.len() * c.iter().max().unwrap()).sum();
    assert_eq!((plan.real_tokens(), plan.padded_tokens()), (real, padded));
    assert!(padded < real + texts.len(), "neighbouring lengths pad little: {padded} vs {real}");
    let batched = block(enc.embed(&texts, None, 2, &mut |_, _| {})).unwrap();
    let single = block(enc.embed(&texts[..1], None, 1, &mut |_, _| {})).unwrap();
    for (a, b) in batched[..enc.dim()].iter().zip(&single) {
        assert!((a - b).abs() < 1e-5, "row 0 is the first text's embedding");
    }
}

/// A batch whose texts differ widely in length is cut where padding would cost more than another
/// pass: fewer positions than padding the whole batch to its longest, no batch above the size
/// asked for, and every text's embedding what it is alone.
#[test]
fn embed_batches_cut_where_lengths_differ_widely() {
    let (enc, _) = tiny();
    let long = "word ".repeat(60);
    let texts = ["a", long.as_str(), "a b", "a b c", long.as_str(), "a"];
    let plan = enc.plan_batches(&texts, 8).unwrap();
    let longest = texts.iter().map(|t| enc.tokenizer.ids(t).unwrap().len()).max().unwrap();
    assert!(plan.batches.len() >= 2, "short and long texts are not padded together");
    assert!(plan.batches.iter().all(|(idx, b)| idx.len() <= 8 && b.batch == idx.len()));
    assert!(plan.padded_tokens() < texts.len() * longest, "{} positions", plan.padded_tokens());
    let mut seen: Vec<usize> = plan.batches.iter().flat_map(|(idx, _)| idx.clone()).collect();
    seen.sort();
    assert_eq!(seen, (0..texts.len()).collect::<Vec<_>>(), "every text in exactly one batch");
    let batched = block(enc.embed(&texts, None, 8, &mut |_, _| {})).unwrap();
    let one_by_one = block(enc.embed(&texts, None, 1, &mut |_, _| {})).unwrap();
    let worst = batched.iter().zip(&one_by_one).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "max difference {worst}");
}

#[test]
fn encoder_weights_receive_no_gradient() {
    let (enc, device) = tiny();
    let ad = device.clone().autodiff();
    let adapter = SoftEmbeddingAdapter::identity(enc.dim(), &device).fork(&ad).train();
    let head = CarHead::zeros(enc.dim(), 3, &device).fork(&ad).train();
    let tokens = enc.tokenizer.batch(&["the city", "a river"]).unwrap();
    let pooled = enc.pooled(&tokens, Some(&adapter));
    let tgt = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &ad);
    let mut grads = cross_entropy(head.forward(pooled), tgt).backward();
    assert_eq!(GradientsParams::from_module(&mut grads, &enc.bert).len(), 0);
    assert_eq!(GradientsParams::from_module(&mut grads, &adapter).len(), 2);
}

fn toy_pairs() -> (Vec<String>, Vec<usize>) {
    let topics = ["river sea ship", "music band song", "football club team", "planet moon star"];
    let mut texts = Vec::new();
    let mut targets = Vec::new();
    for (d, t) in topics.iter().enumerate() {
        let w: Vec<&str> = t.split(' ').collect();
        for k in 0..12 {
            texts.push(format!("{} {} {}", w[k % 3], w[(k + 1) % 3], ["the", "a", "of", "in"][k % 4]));
            targets.push(d);
        }
    }
    (texts, targets)
}

/// The toy pairs' frozen pooled features (row-major `[48, d]`) and their targets.
fn toy_features(enc: &SentenceEncoder) -> (Vec<f32>, Vec<usize>) {
    let (texts, targets) = toy_pairs();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    (block(enc.embed(&refs, None, 16, &mut |_, _| {})).unwrap(), targets)
}

/// A model keyed by the toy pairs' own centroids (keys = the mean of each document's features,
/// zero residual): it ranks its own pairs well before any training.
fn centroid_keyed_start(feats: &[f32], targets: &[usize], d: usize, device: &Device) -> Retriever {
    let keys = centroid_keys(&vec![0.0; 4 * d], feats, targets, d, 1.0);
    Retriever { adapter: SoftEmbeddingAdapter::identity(d, device), head: CarHead::from_keys(&keys, 4, d, device) }
}

#[test]
fn head_only_training_on_cached_features_fits_the_pairs() {
    let (enc, device) = tiny();
    let (feats, targets) = toy_features(&enc);
    let model = Retriever {
        adapter: SoftEmbeddingAdapter::identity(enc.dim(), &device),
        head: CarHead::zeros(enc.dim(), 4, &device),
    };
    // No pull: a head without keys fits the pairs freely.
    let cfg = TrainConfig {
        epochs: 60,
        batch_size: 16,
        holdout_fraction: 0.0,
        head_lr: 5e-2,
        pull_to_keys: 0.0,
        ..Default::default()
    };
    let mut losses = Vec::new();
    let (trained, report) = block(train(model, TrainInputs::Cached(&feats), &targets, &cfg, &device, &mut |p| {
        losses.push(p.loss);
        true
    }))
    .unwrap();
    assert_eq!(report.steps, 60 * 3);
    assert!(losses.last().unwrap() < &(0.5 * losses[0]), "loss {} → {}", losses[0], losses.last().unwrap());
    let logits = trained.head.forward(Tensor::from_data(TensorData::new(feats.clone(), [48, enc.dim()]), &device));
    let best: Vec<i64> = block(logits.argmax(1).into_data_async()).unwrap().convert::<i64>().try_into_vec().unwrap();
    let correct = best.iter().zip(&targets).filter(|(b, t)| **b as usize == **t).count();
    assert!(correct >= 40, "{correct}/48 training pairs ranked first");
}

/// A keyed head ranks like inner-product search against its keys before training; training
/// moves only the residual and bias (the keys are not parameters), and a checkpoint keeps them.
#[test]
fn keys_are_fixed_the_residual_trains_and_checkpoints_keep_both() {
    let (enc, device) = tiny();
    let (feats, targets) = toy_features(&enc);
    let d = enc.dim();
    let keys: Vec<f32> = (0..4 * d).map(|i| ((i * 5 % 13) as f32 - 6.0) / 40.0).collect();
    let head = CarHead::from_keys(&keys, 4, d, &device);
    let q = &feats[..d];
    let logits =
        block(read_f32(head.forward(Tensor::from_data(TensorData::new(q.to_vec(), [1, d]), &device)))).unwrap();
    for (j, l) in logits.iter().enumerate() {
        let dot: f32 = keys[j * d..(j + 1) * d].iter().zip(q).map(|(k, v)| k * v).sum();
        assert!((l - 20.0 * dot).abs() < 1e-4, "logit {j}: {l} vs {}", 20.0 * dot);
    }
    let model = Retriever { adapter: SoftEmbeddingAdapter::identity(d, &device), head };
    let cfg = TrainConfig { epochs: 5, batch_size: 16, holdout_fraction: 0.0, head_lr: 5e-2, ..Default::default() };
    let (trained, _) =
        block(train(model, TrainInputs::Cached(&feats), &targets, &cfg, &device, &mut |_| true)).unwrap();
    let k_after = block(read_f32(trained.head.keys.clone().unwrap().transpose())).unwrap();
    assert_eq!(k_after, keys, "training must not move the keys");
    let residual = block(read_f32(trained.head.weight.val())).unwrap();
    assert!(residual.iter().any(|v| v.abs() > 1e-4), "the residual trains");
    let bytes = block(save_retriever(&trained, &["a".into(), "b".into(), "c".into(), "d".into()])).unwrap();
    let (back, _) = load_retriever(&bytes, d, &device).unwrap();
    assert_eq!(
        block(read_f32(back.head.effective_weight())).unwrap(),
        block(read_f32(trained.head.effective_weight())).unwrap()
    );
    assert_eq!(block(read_f32(back.head.weight.val())).unwrap(), residual);
}

/// The host-side model (what the tab keeps and the simulator trades) computes the device head's
/// logits, survives the trip through the device and back, and takes deltas by wire name.
#[test]
fn the_host_model_agrees_with_the_device_head() {
    use fedsearch_core::host::{ADAPTER_BIAS, HEAD_BIAS, HEAD_WEIGHT, HostModel};
    let (enc, device) = tiny();
    let (feats, _) = toy_features(&enc);
    let (d, n) = (enc.dim(), 4);
    let keys: Vec<f32> = (0..n * d).map(|i| ((i * 7 % 11) as f32 - 5.0) / 30.0).collect();
    let mut host = HostModel::initial(d, n);
    host.head_w = (0..d * n).map(|i| ((i * 3 % 17) as f32 - 8.0) / 100.0).collect();
    host.head_b = vec![0.1, -0.2, 0.3, 0.0];
    let model = host.to_retriever(Some(&keys), &device);
    let q = &feats[..d];
    let device_logits =
        block(read_f32(model.head.forward(Tensor::from_data(TensorData::new(q.to_vec(), [1, d]), &device)))).unwrap();
    let host_logits = host.logits(q, &keys);
    for (a, b) in host_logits.iter().zip(&device_logits) {
        assert!((a - b).abs() < 1e-4, "host {host_logits:?} vs device {device_logits:?}");
    }
    assert_eq!(block(HostModel::from_retriever(&model)).unwrap(), host);

    // From a federation's named tensors: what is missing starts at its initial value.
    let bias = vec![1.0, 2.0, 3.0, 4.0];
    let named = HostModel::from_named([(HEAD_BIAS, bias.as_slice())], d, n).unwrap();
    assert_eq!(named.head_b, bias);
    assert_eq!(named.adapter_w, HostModel::initial(d, n).adapter_w, "a missing adapter is the identity");
    assert!(HostModel::from_named([(HEAD_BIAS, &bias[..3])], d, n).is_err(), "a wrong shape is refused");
    assert!(HostModel::from_named([("head.keys", bias.as_slice())], d, n).is_err(), "an unknown name is refused");
    let delta = host.delta(&named, HEAD_BIAS).unwrap();
    assert_eq!(delta, vec![0.1 - 1.0, -0.2 - 2.0, 0.3 - 3.0, -4.0]);
    assert_eq!(host.delta(&named, HEAD_WEIGHT).unwrap(), host.head_w);
    assert_eq!(host.delta(&named, ADAPTER_BIAS).unwrap(), vec![0.0; d]);
    assert!(host.delta(&HostModel::initial(d, n + 1), HEAD_BIAS).is_err());
}

/// One recipe for every caller; small runs get batches that leave an epoch 8 steps.
#[test]
fn the_recipe_and_its_batches_for_small_runs() {
    use fedsearch_core::train::TrainMode;
    let head = TrainConfig::recipe(TrainMode::Head);
    assert_eq!((head.batch_size, head.head_lr, head.pull_to_keys, head.patience), (256, 1e-2, 1.0, 3));
    let e2e = TrainConfig::recipe(TrainMode::AdapterHead);
    assert_eq!((e2e.batch_size, e2e.head_lr, e2e.adapter_lr), (32, 1e-3, 1e-4));
    assert_eq!((e2e.epochs, e2e.max_steps, e2e.patience), (30, Some(3_000), 30), "no early end");
    assert!(e2e.keep_last_epoch && !head.keep_last_epoch);
    assert_eq!(head.max_steps, None);
    assert_eq!(TrainConfig::default().batch_size, head.batch_size);
    assert_eq!(head.clone().for_examples(7_000).batch_size, 256);
    assert_eq!(head.clone().for_examples(200).batch_size, 25);
    assert_eq!(head.for_examples(0).batch_size, 1);
}

/// Early stopping counts the start: a run whose every epoch is worse on the held-out pairs
/// (here a learning rate that wrecks the head) returns the model it started from, and says so.
#[test]
fn a_run_that_never_beats_its_start_returns_the_start() {
    let (enc, device) = tiny();
    let (feats, targets) = toy_features(&enc);
    let start = || centroid_keyed_start(&feats, &targets, enc.dim(), &device);
    let run_for = |epochs: usize, head_lr: f64, keep_last_epoch: bool| {
        let cfg =
            TrainConfig { epochs, batch_size: 8, head_lr, pull_to_keys: 0.0, keep_last_epoch, ..Default::default() };
        block(train(start(), TrainInputs::Cached(&feats), &targets, &cfg, &device, &mut |_| true)).unwrap()
    };
    let run = |head_lr: f64| run_for(4, head_lr, false);
    let (wrecked, report) = run(50.0);
    let start_top1 = report.start_val_top1.expect("48 pairs have a held-out split");
    assert!(start_top1 > 0.5, "the centroid keys rank their own pairs: {start_top1}");
    assert_eq!(report.best_epoch, 0, "{report:?}");
    assert_eq!(report.best_val_top1, Some(start_top1));
    assert_eq!(report.epochs, 3, "patience 3 ends the 4-epoch run after 3 epochs without a better one");
    assert!(report.steps > 0, "it did train");
    assert!(block(read_f32(wrecked.head.weight.val())).unwrap().iter().all(|v| *v == 0.0), "the start's residual");
    // A sane run that improves on (or matches) the start keeps a trained epoch.
    let (_, report) = run(1e-2);
    assert!(report.best_val_top1.unwrap() >= start_top1, "{report:?}");
    // Keeping the last epoch (the end-to-end recipe): a wrecked run whose last epoch is worse
    // than the start by more than the margin gives the start back (3 epochs: the 4-pair held-out
    // split scores the wrecked head's epochs 0.25, 0.5, 0.25); a sane one keeps its last epoch
    // unless that is clearly worse than the start.
    let (wrecked, report) = run_for(3, 50.0, true);
    let last = *report.val_top1_by_check.last().unwrap();
    assert!(start_top1 - last > start_margin(start_top1, 4), "{report:?}");
    assert_eq!((report.best_epoch, report.best_val_top1), (0, Some(start_top1)), "{report:?}");
    assert!(block(read_f32(wrecked.head.weight.val())).unwrap().iter().all(|v| *v == 0.0), "the start's residual");
    let (_, report) = run_for(4, 1e-2, true);
    let last = *report.val_top1_by_check.last().unwrap();
    let expected =
        if start_top1 - last > start_margin(start_top1, 4) { (0, start_top1) } else { (report.epochs, last) };
    assert_eq!((report.best_epoch, report.best_val_top1.unwrap()), expected, "{report:?}");
}

#[test]
fn the_start_margin_is_two_standard_errors_and_at_least_two_pairs() {
    // 709 held-out pairs at 0.79: 2·√(0.79·0.21/709) = 0.030, so a last epoch 0.4 points below
    // the start (stop 18's CLI run) is kept, one 3.5 points below is not.
    let m = start_margin(0.7927, 709);
    assert!((m - 0.0304).abs() < 5e-4, "{m}");
    assert!(0.7927 - 0.7884 < m && 0.7927 - 0.7577 > m);
    // A perfect start on 4 pairs: two pairs' worth.
    assert_eq!(start_margin(1.0, 4), 0.5);
    assert_eq!(start_margin(0.5, 0), 2.0);
}

/// The step cap can end a run inside an epoch; that last partial epoch is still judged on the
/// held-out pairs (its steps count), and every judged epoch's top-1 is reported.
#[test]
fn a_capped_run_judges_its_last_partial_epoch() {
    let (enc, device) = tiny();
    let (feats, targets) = toy_features(&enc);
    let d = enc.dim();
    let model = Retriever { adapter: SoftEmbeddingAdapter::identity(d, &device), head: CarHead::zeros(d, 4, &device) };
    let cfg = TrainConfig { epochs: 10, batch_size: 8, max_steps: Some(9), patience: 10, ..Default::default() };
    let (_, report) = block(train(model, TrainInputs::Cached(&feats), &targets, &cfg, &device, &mut |_| true)).unwrap();
    // 48 pairs, 4 held out: 44 in batches of 8 are 6 steps an epoch, so step 9 ends the second.
    assert_eq!((report.holdout_examples, report.steps, report.epochs), (4, 9, 2), "{report:?}");
    assert_eq!(report.val_top1_by_check.len(), 2, "{report:?}");
    let best_judged = report.val_top1_by_check.iter().cloned().fold(report.start_val_top1.unwrap(), f64::max);
    assert_eq!(report.best_val_top1, Some(best_judged), "{report:?}");
}

/// Held-out checks within epochs (`check_every`) as well as at their ends, with patience counted
/// in checks: a run that falls below its start stops inside its first epoch.
#[test]
fn held_out_checks_run_within_epochs_and_patience_counts_them() {
    let (enc, device) = tiny();
    let (feats, targets) = toy_features(&enc);
    let run = |head_lr: f64, patience: usize| {
        let model = centroid_keyed_start(&feats, &targets, enc.dim(), &device);
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 8,
            head_lr,
            patience,
            check_every: Some(4),
            pull_to_keys: 0.0,
            ..Default::default()
        };
        block(train(model, TrainInputs::Cached(&feats), &targets, &cfg, &device, &mut |_| true)).unwrap().1
    };
    // 44 training pairs in batches of 8: 6 steps an epoch, checked after its 4th and its last.
    let report = run(1e-2, 100);
    assert_eq!(report.check_steps, vec![4, 6, 10, 12], "{report:?}");
    assert_eq!(report.val_top1_by_check.len(), 4, "{report:?}");
    assert!(report.best_step == 0 || report.check_steps.contains(&report.best_step), "{report:?}");
    // The wrecking learning rate scores 0.25 at step 6 against a start above 0.5 (the test
    // above): patience 1 ends the run at the first check that is not better, inside epoch 1.
    let report = run(50.0, 1);
    assert!(report.start_val_top1.unwrap() > 0.5, "{report:?}");
    assert!(report.steps <= 6 && report.epochs == 1, "{report:?}");
    assert_eq!(*report.check_steps.last().unwrap(), report.steps, "{report:?}");
    assert!(matches!(report.best_step, 0 | 4), "{report:?}");
}

#[test]
fn centroid_keys_match_a_hand_computation() {
    let device = Device::flex();
    // Two documents in 2-d; document 0 has queries (0,1) and (0,3) (mean (0,2)), document 1 none.
    let docs = [1.0f32, 0.0, 0.0, 1.0];
    let queries = [0.0f32, 1.0, 0.0, 3.0];
    let head = CarHead::from_keys(&centroid_keys(&docs, &queries, &[0, 0], 2, 0.5), 2, 2, &device);
    // Key 0 = normalise((1,0) + 0.5·(0,2)) = (1,1)/√2; key 1 stays (0,1). K + W is [d, n_docs];
    // the trained residual W starts at zero.
    assert!(block(read_f32(head.weight.val())).unwrap().iter().all(|v| *v == 0.0));
    let w = block(read_f32(head.effective_weight())).unwrap();
    let r = std::f32::consts::FRAC_1_SQRT_2;
    for (got, want) in w.iter().zip([r, 0.0, r, 1.0]) {
        assert!((got - want).abs() < 1e-6, "{w:?}");
    }
    assert_eq!(head.num_docs(), 2);
}

#[test]
fn keys_towards_two_query_sets_match_a_hand_computation() {
    // Document 0 in 2-d; pseudo-queries (0,1), (0,3) (mean (0,2), mix 0.5) and one category
    // question (−1,1) (mix 1): (1,0) + (0,1) + (−1,1) = (0,2) → (0,1). Document 1 has only a
    // question (1,0): (0,1) + (1,0) → (1,1)/√2.
    let docs = [1.0f32, 0.0, 0.0, 1.0];
    let pq = [0.0f32, 1.0, 0.0, 3.0];
    let questions = [-1.0f32, 1.0, 1.0, 0.0];
    let keys = keys_towards(
        &docs,
        &[QuerySet { emb: &pq, targets: &[0, 0], mix: 0.5 }, QuerySet { emb: &questions, targets: &[0, 1], mix: 1.0 }],
        2,
    );
    let r = std::f32::consts::FRAC_1_SQRT_2;
    for (got, want) in keys.iter().zip([0.0, 1.0, r, r]) {
        assert!((got - want).abs() < 1e-6, "{keys:?}");
    }
    // One set is centroid_keys.
    assert_eq!(
        keys_towards(&docs, &[QuerySet { emb: &pq, targets: &[0, 0], mix: 0.5 }], 2),
        centroid_keys(&docs, &pq, &[0, 0], 2, 0.5)
    );
}

#[test]
fn the_pull_keeps_the_head_near_its_keys() {
    let (enc, device) = tiny();
    let (feats, targets) = toy_features(&enc);
    let d = enc.dim();
    let start: Vec<f32> = (0..d * 4).map(|i| ((i * 7 % 11) as f32 - 5.0) / 50.0).collect();
    let distance = |pull: f64| -> f32 {
        let model = Retriever {
            adapter: SoftEmbeddingAdapter::identity(d, &device),
            // `start` is [d, 4]; keys are taken as rows [4, d].
            head: CarHead::from_keys(&transpose(&start, d, 4), 4, d, &device),
        };
        let cfg = TrainConfig {
            epochs: 20,
            batch_size: 16,
            holdout_fraction: 0.0,
            head_lr: 5e-2,
            pull_to_keys: pull,
            ..Default::default()
        };
        let (trained, _) =
            block(train(model, TrainInputs::Cached(&feats), &targets, &cfg, &device, &mut |_| true)).unwrap();
        let w = block(read_f32(trained.head.effective_weight())).unwrap();
        w.iter().zip(&start).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt()
    };
    let free = distance(0.0);
    let pulled = distance(10.0);
    assert!(free > 0.1, "training without a pull moves the head ({free})");
    assert!(pulled < 0.5 * free, "a strong pull keeps the head near its start: {pulled} vs {free}");
}

#[test]
fn adapter_and_head_training_lowers_loss_changes_adapter_and_can_be_cancelled() {
    let (enc, device) = tiny();
    let (texts, targets) = toy_pairs();
    let model = Retriever {
        adapter: SoftEmbeddingAdapter::identity(enc.dim(), &device),
        head: CarHead::zeros(enc.dim(), 4, &device),
    };
    let before_encoder = block(read_f32(enc.bert.embeddings.word.weight.val())).unwrap();
    let cfg = TrainConfig {
        epochs: 15,
        batch_size: 16,
        holdout_fraction: 0.25,
        patience: 100,
        head_lr: 5e-2,
        adapter_lr: 1e-2,
        ..Default::default()
    };
    let mut losses = Vec::new();
    let mut saw_val = false;
    let inputs = TrainInputs::Texts { encoder: &enc, texts: &texts };
    let (trained, report) = block(train(model, inputs, &targets, &cfg, &device, &mut |p| {
        if p.val_top1.is_some() {
            saw_val = true
        } else {
            losses.push(p.loss)
        }
        true
    }))
    .unwrap();
    assert!(saw_val && report.holdout_examples == 12 && report.best_val_top1.is_some());
    let first: f32 = losses[..3].iter().sum::<f32>() / 3.0;
    let last: f32 = losses[losses.len() - 3..].iter().sum::<f32>() / 3.0;
    assert!(last < 0.7 * first, "loss {first} → {last}");
    let w = block(read_f32(trained.adapter.weight.val())).unwrap();
    let d = enc.dim();
    let moved: f32 = w.iter().enumerate().map(|(i, v)| (v - if i % (d + 1) == 0 { 1.0 } else { 0.0 }).abs()).sum();
    assert!(moved > 1e-3, "the adapter did not train");
    assert_eq!(block(read_f32(enc.bert.embeddings.word.weight.val())).unwrap(), before_encoder);

    let model = Retriever {
        adapter: SoftEmbeddingAdapter::identity(enc.dim(), &device),
        head: CarHead::zeros(enc.dim(), 4, &device),
    };
    let inputs = TrainInputs::Texts { encoder: &enc, texts: &texts };
    let cancelled = block(train(model, inputs, &targets, &cfg, &device, &mut |p| p.step < 2));
    assert!(matches!(cancelled, Err(CoreError::Cancelled)));
}

#[test]
fn checkpoint_round_trip_and_width_check() {
    let (enc, device) = tiny();
    let d = enc.dim();
    let model = Retriever {
        adapter: SoftEmbeddingAdapter::from_values(
            (0..d * d).map(|i| i as f32 * 1e-3).collect(),
            vec![0.5; d],
            &device,
        ),
        head: CarHead::from_values((0..d * 3).map(|i| i as f32).collect(), vec![1.0, 2.0, 3.0], d, &device),
    };
    let ids = vec!["a".to_string(), "b".into(), "c".into()];
    let bytes = block(save_retriever(&model, &ids)).unwrap();
    let (back, back_ids) = load_retriever(&bytes, d, &device).unwrap();
    assert_eq!(back_ids, ids);
    assert_eq!(
        block(read_f32(back.adapter.weight.val())).unwrap(),
        block(read_f32(model.adapter.weight.val())).unwrap()
    );
    assert_eq!(block(read_f32(back.head.weight.val())).unwrap(), block(read_f32(model.head.weight.val())).unwrap());
    assert!(matches!(load_retriever(&bytes, d + 1, &device), Err(CoreError::Checkpoint(_))));
    assert!(matches!(load_retriever(&bytes[..10], d, &device), Err(CoreError::Checkpoint(_))));
}

/// A batch too large for the storage-binding limit is encoded in parts (embedding and
/// adapter+head training) and gives the same numbers as one batch under a generous limit.
#[test]
fn batches_over_the_storage_binding_limit_are_split_with_the_same_result() {
    let (mut enc, device) = tiny();
    let (texts, targets) = toy_pairs();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let run = |enc: &SentenceEncoder| {
        let emb = block(enc.embed(&refs, None, 48, &mut |_, _| {})).unwrap();
        let model = Retriever {
            adapter: SoftEmbeddingAdapter::identity(enc.dim(), &device),
            head: CarHead::zeros(enc.dim(), 4, &device),
        };
        let cfg =
            TrainConfig { epochs: 2, batch_size: 16, holdout_fraction: 0.0, adapter_lr: 1e-2, ..Default::default() };
        let mut losses = Vec::new();
        let inputs = TrainInputs::Texts { encoder: enc, texts: &texts };
        block(train(model, inputs, &targets, &cfg, &device, &mut |p| {
            losses.push(p.loss);
            true
        }))
        .unwrap();
        (emb, losses)
    };
    let (emb_whole, loss_whole) = run(&enc);
    // Room for 5 examples of the longest text (training's groups are sized for their own
    // length, embedding's batches for the longest allowed): batches of 48 and 16 must be split.
    let longest = refs.iter().map(|t| enc.tokenizer.ids(t).unwrap().len()).max().unwrap();
    enc.storage_binding_limit = 5 * enc.activation_bytes_per_example(longest);
    assert_eq!(enc.fit_batch(16, longest), 5);
    assert!(enc.fit_batch(48, enc.tokenizer.max_len()) <= 5);
    let (emb_split, loss_split) = run(&enc);
    for (a, b) in emb_whole.iter().zip(&emb_split) {
        assert!((a - b).abs() < 1e-5, "embedding {a} vs {b}");
    }
    assert_eq!(loss_whole.len(), loss_split.len());
    for (a, b) in loss_whole.iter().zip(&loss_split) {
        assert!((a - b).abs() < 1e-4, "loss {a} vs {b}");
    }
}

#[test]
fn gelu_exact_equals_burns_gelu_with_and_without_gradients() {
    use burn::tensor::activation::gelu;
    use fedsearch_core::encoder::gelu_exact;
    let xs = vec![-20.0f32, -6.0, -1.0, 0.0, 0.5, 3.0, 13.5, 20.0, 60.0];
    let n = xs.len();
    let ad = Device::flex().autodiff();
    // Untracked: Burn's own op.
    let plain = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &Device::flex());
    let reference = block(read_f32(gelu(plain.clone()))).unwrap();
    assert_eq!(block(read_f32(gelu_exact(plain))).unwrap(), reference);
    // Tracked: the composition, same values, and the gradient of Burn's CPU backend (exact).
    let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &ad).require_grad();
    let y = gelu_exact(x.clone());
    let values = block(read_f32(y.clone().inner())).unwrap();
    let grad = block(read_f32(x.grad(&y.sum().backward()).unwrap())).unwrap();
    let x2 = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &ad).require_grad();
    let burn_grad = block(read_f32(x2.grad(&gelu(x2.clone()).sum().backward()).unwrap())).unwrap();
    for i in 0..n {
        assert!((values[i] - reference[i]).abs() <= 1e-5 * reference[i].abs().max(1.0), "gelu({}) {values:?}", xs[i]);
        assert!(
            grad[i].is_finite() && (grad[i] - burn_grad[i]).abs() < 1e-5,
            "gelu'({}): {grad:?} vs {burn_grad:?}",
            xs[i]
        );
    }
    // Φ(x) + x·φ(x): 0 far left, ½ at 0, 1 far right.
    assert!(grad[0].abs() < 1e-6 && (grad[3] - 0.5).abs() < 1e-6 && (grad[n - 1] - 1.0).abs() < 1e-6, "{grad:?}");
}

#[test]
fn training_losses_are_deterministic_finite_and_fall() {
    use fedsearch_core::bench::{LossCheckConfig, training_losses};
    let (enc, _) = tiny();
    let cfg = LossCheckConfig { sentences: 4, steps: 5 };
    let a = block(training_losses(&enc, &cfg)).unwrap();
    let b = block(training_losses(&enc, &cfg)).unwrap();
    assert_eq!(a.len(), 5);
    assert_eq!(a, b, "the same start and data must give the same losses");
    assert!(a.iter().all(|l| l.is_finite()) && a[4] < a[0], "{a:?}");
}

#[test]
fn f16_weights_load_close_to_f32_and_overflow_is_refused() {
    let files = tiny_bert_files(&TinyBertSpec::default()).unwrap();
    let half = fedsearch_core::loader::to_f16_safetensors(&files.safetensors).unwrap();
    let f32_st = safetensors::SafeTensors::deserialize(&files.safetensors).unwrap();
    let f16_st = safetensors::SafeTensors::deserialize(&half).unwrap();
    let mut names: Vec<&str> = f32_st.names();
    let mut half_names: Vec<&str> = f16_st.names();
    names.sort();
    half_names.sort();
    assert_eq!(names, half_names);
    for n in &names {
        let t = f16_st.tensor(n).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F16, "{n}");
        assert_eq!(t.shape(), f32_st.tensor(n).unwrap().shape(), "{n}");
    }
    let device = Device::flex();
    let texts = ["the tower in paris", "a river in africa"];
    let full = SentenceEncoder::load(&files, &device, 64).unwrap();
    let halved = SentenceEncoder::load(&ModelFiles { safetensors: half, ..files }, &device, 64).unwrap();
    let a = block(full.embed(&texts, None, 2, &mut |_, _| {})).unwrap();
    let b = block(halved.embed(&texts, None, 2, &mut |_, _| {})).unwrap();
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst > 0.0 && worst < 1e-2, "f16 weights moved an embedding value by {worst}");

    // A weight beyond f16's range is an error, not an infinity.
    let big = [1.0e5f32, 1.0];
    let bytes: Vec<u8> = big.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &bytes).unwrap();
    let file = safetensors::serialize(vec![("w".to_string(), view)], None).unwrap();
    match fedsearch_core::loader::to_f16_safetensors(&file) {
        Err(CoreError::Weights(msg)) => assert!(msg.contains("does not fit f16"), "{msg}"),
        other => panic!("expected an overflow error, got {:?}", other.map(|v| v.len())),
    }
}

#[test]
fn length_groups_cut_sorted_lengths_where_padding_costs_more_than_a_group() {
    use fedsearch_core::model::length_groups;
    let roomy = |_: usize| 100;
    assert_eq!(length_groups(&[], 32, roomy), Vec::<usize>::new());
    assert_eq!(length_groups(&[3, 3, 3, 3], 32, roomy), vec![4]);
    // One group computes 4 × 40 positions; two compute 3 × 3 + 40 and pay one overhead more.
    assert_eq!(length_groups(&[3, 3, 3, 40], 4, roomy), vec![3, 1]);
    assert_eq!(length_groups(&[3, 3, 3, 40], 1000, roomy), vec![4]);
    assert_eq!(length_groups(&[2, 2, 9, 9, 30, 30], 1, roomy), vec![2, 2, 2]);
    // The size bound holds even where one group would be cheaper.
    let sizes = length_groups(&[5; 10], 1000, |_| 4);
    assert!(sizes.iter().all(|&s| (1..=4).contains(&s)) && sizes.iter().sum::<usize>() == 10, "{sizes:?}");
    assert_eq!(sizes.len(), 3);
    // The bound depends on the group's longest member.
    assert_eq!(length_groups(&[1, 1, 1, 8, 8], 1000, |len| if len > 4 { 1 } else { 3 }), vec![3, 1, 1]);
}

/// Training encodes a batch in length groups, each padded to its own longest text, and puts the
/// rows back in the batch's order: the same pooled rows, and the same adapter gradient, as one
/// batch padded to its longest member.
#[test]
fn length_grouped_batches_give_the_same_rows_and_gradient_as_one_padded_batch() {
    use fedsearch_core::model::length_groups;
    let (enc, _) = tiny();
    let (texts, _) = toy_pairs();
    // Long and short texts interleaved, longest first: the groups must reorder the rows.
    let mixed: Vec<String> =
        (0..12).map(|i| if i % 3 == 0 { [texts[i].as_str(); 8].join(" ") } else { texts[i].clone() }).collect();
    let refs: Vec<&str> = mixed.iter().map(String::as_str).collect();
    let mut lens: Vec<usize> = refs.iter().map(|t| enc.tokenizer.ids(t).unwrap().len()).collect();
    lens.sort();
    assert!(length_groups(&lens, fedsearch_core::model::GROUP_OVERHEAD_TOKENS, |_| 100).len() > 1, "{lens:?}");
    assert!(matches!(enc.pooled_texts(&[], None), Err(CoreError::Data(_))));

    let ad = Device::flex().autodiff();
    let d = enc.dim();
    let weights: Vec<f32> = (0..refs.len() * d).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    let run = |grouped: bool| {
        let adapter = SoftEmbeddingAdapter::identity(d, &ad);
        let pooled = if grouped {
            enc.pooled_texts(&refs, Some(&adapter)).unwrap()
        } else {
            enc.pooled(&enc.tokenizer.batch(&refs).unwrap(), Some(&adapter))
        };
        let rows = block(read_f32(pooled.clone().inner())).unwrap();
        let w = Tensor::<2>::from_data(TensorData::new(weights.clone(), [refs.len(), d]), &ad);
        let grads = (pooled * w).sum().backward();
        let grad = block(read_f32(adapter.weight.val().grad(&grads).unwrap())).unwrap();
        (rows, grad)
    };
    let (rows_grouped, grad_grouped) = run(true);
    let (rows_one, grad_one) = run(false);
    for (a, b) in rows_grouped.iter().zip(&rows_one) {
        assert!((a - b).abs() < 1e-5, "row value {a} vs {b}");
    }
    assert!(grad_one.iter().any(|g| g.abs() > 1e-4));
    for (a, b) in grad_grouped.iter().zip(&grad_one) {
        assert!((a - b).abs() < 1e-4, "gradient {a} vs {b}");
    }
}

/// erf in f64 by its Maclaurin series (|x| ≤ 3: ~1e-13 accurate), the reference for the CPU
/// backend's vectorised f32 erf (vendor/README.md).
fn erf_series(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..120 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn the_cpu_backends_erf_gelu_and_exp_match_f64_references_small_and_large() {
    use burn::tensor::activation::{gelu, softmax};
    // 801 points of [-4, 4] (erf's argument within ±2.83), and the same repeated past the size at
    // which the patched kernels split the work over threads.
    let grid: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.01).collect();
    for n in [grid.len(), 100 * grid.len()] {
        let xs: Vec<f32> = grid.iter().cycle().take(n).copied().collect();
        let t = || Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &Device::flex());
        let erf = block(read_f32(t().erf())).unwrap();
        let gelu_values = block(read_f32(gelu(t()))).unwrap();
        let exp = block(read_f32(t().mul_scalar(20.0).exp())).unwrap();
        let ad = Device::flex().autodiff();
        let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &ad).require_grad();
        let grad = block(read_f32(x.grad(&gelu(x.clone()).sum().backward()).unwrap())).unwrap();
        // Worst absolute errors (exp: relative) over the grid.
        let mut worst = [0f64; 4];
        for i in 0..n {
            let x = xs[i] as f64;
            let cdf = 0.5 * (1.0 + erf_series(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want_exp = ((20.0 * xs[i]) as f64).exp();
            let errors = [
                (erf[i] as f64 - erf_series(x)).abs(),
                (gelu_values[i] as f64 - x * cdf).abs(),
                (grad[i] as f64 - (cdf + x * pdf)).abs(),
                (exp[i] as f64 - want_exp).abs() / want_exp,
            ];
            for (w, e) in worst.iter_mut().zip(errors) {
                *w = w.max(e);
            }
        }
        // erf: ~3 ulp of 1 near |x| = 4, where the approximation meets its clamp.
        let bounds = [5e-7, 2e-6, 2e-6, 4e-7];
        assert!(worst.iter().zip(bounds).all(|(w, b)| *w < b), "n = {n}: worst erf, gelu, gelu', exp {worst:?}");
        eprintln!("n = {n}: worst erf, gelu, gelu', exp (relative) {worst:?}");
    }
    // Far tails, infinities and NaN.
    let xs = vec![-1e4f32, -100.0, -10.0, 10.0, 100.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    let t = Tensor::<1>::from_data(TensorData::new(xs.clone(), [xs.len()]), &Device::flex());
    let erf = block(read_f32(t.clone().erf())).unwrap();
    for (got, want) in erf.iter().zip([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0]) {
        assert!((got - want).abs() < 1e-7, "{erf:?}");
    }
    assert!(erf[7].is_nan());
    let g = block(read_f32(gelu(t.clone()))).unwrap();
    assert!(g[0] == 0.0 && g[1] == 0.0 && g[2].abs() < 1e-6 && g[3] == 10.0 && g[4] == 100.0, "{g:?}");
    let e = block(read_f32(t.exp())).unwrap();
    assert!(e[0] == 0.0 && e[1] == 0.0 && e[6] == 0.0 && e[7].is_nan(), "{e:?}");
    assert!(((e[2] as f64) - (-10f64).exp()).abs() < 1e-6 * (-10f64).exp(), "{e:?}");
    // A masked score (-inf, or BERT's -10000) weighs exactly nothing.
    let scores =
        Tensor::<2>::from_data(TensorData::new(vec![0.0f32, f32::NEG_INFINITY, 1.0, -1e4], [1, 4]), &Device::flex());
    let p = block(read_f32(softmax(scores, 1))).unwrap();
    assert!(p[1] == 0.0 && p[3] == 0.0 && (p[0] + p[2] - 1.0).abs() < 1e-6, "{p:?}");
}

/// The patched CPU backend's other paths (vendor/README.md): scalar and same-shape binary ops of
/// shared (not reusable) operands into new buffers, in place, small and past the size at which
/// they run on several threads, are exact; matrix products written into unzeroed memory equal a
/// host computation, and an empty inner dimension still gives zeros.
#[test]
fn the_cpu_backends_large_elementwise_ops_and_unzeroed_products_are_exact() {
    let device = Device::flex();
    for n in [1_000usize, 600_000] {
        let xs: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 * 0.37 - 150.0).collect();
        let ys: Vec<f32> = (0..n).map(|i| ((i * 104_729) % 997) as f32 * 0.11 + 0.5).collect();
        let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device);
        let y = Tensor::<1>::from_data(TensorData::new(ys.clone(), [n]), &device);
        // `x` and `y` stay alive, so every op below writes a new buffer; then the same in place.
        type HostOp = Box<dyn Fn(f32, f32) -> f32>;
        let cases: [(Tensor<1>, HostOp); 7] = [
            (x.clone().mul_scalar(1.5), Box::new(|a, _| a * 1.5)),
            (x.clone().add_scalar(-2.25), Box::new(|a, _| a - 2.25)),
            (x.clone() + y.clone(), Box::new(|a, b| a + b)),
            (x.clone() * y.clone(), Box::new(|a, b| a * b)),
            (x.clone() - y.clone(), Box::new(|a, b| a - b)),
            (x.clone() / y.clone(), Box::new(|a, b| a / b)),
            (x.clone().mul_scalar(2.0).sub(y.clone()).div(y.clone()), Box::new(|a, b| (a * 2.0 - b) / b)),
        ];
        for (k, (got, want)) in cases.into_iter().enumerate() {
            let got = block(read_f32(got)).unwrap();
            let bad = (0..n).find(|&i| got[i].to_bits() != want(xs[i], ys[i]).to_bits());
            assert_eq!(bad, None, "n = {n}, case {k}: first difference at {bad:?}");
        }
    }
    // [m, k] x [k, n] against a host sum in f64.
    let (m, k, n) = (37, 19, 4_096);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.5).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 13) % 29) as f32 / 29.0 - 0.5).collect();
    let lhs = Tensor::<2>::from_data(TensorData::new(a.clone(), [m, k]), &device);
    let rhs = Tensor::<2>::from_data(TensorData::new(b.clone(), [k, n]), &device);
    let got = block(read_f32(lhs.matmul(rhs))).unwrap();
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k).map(|t| a[i * k + t] as f64 * b[t * n + j] as f64).sum();
            assert!((got[i * n + j] as f64 - want).abs() < 1e-5, "({i}, {j}): {} vs {want}", got[i * n + j]);
        }
    }
    let empty = Tensor::<2>::zeros([3, 0], &device).matmul(Tensor::<2>::zeros([0, 5], &device));
    assert_eq!(empty.dims(), [3, 5]);
    assert!(block(read_f32(empty)).unwrap().iter().all(|v| *v == 0.0));
}
