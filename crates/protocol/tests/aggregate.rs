//! Streaming FedAvg equals an independently computed weighted mean, is
//! order-independent and persistable; server optimizers apply deltas correctly.

mod common;
use common::*;
use fedsearch_protocol::*;

fn updates(n: u64) -> Vec<Update> {
    (0..n).map(|i| update(FederationMode::Shared, 100 + i)).collect()
}

/// Reference weighted mean computed straightforwardly in f64.
fn reference_mean(us: &[Update]) -> Vec<Vec<f64>> {
    let total: f64 = us.iter().map(|u| u.num_examples as f64).sum();
    (0..us[0].tensors.len())
        .map(|ti| {
            let len = us[0].tensors[ti].data.len();
            (0..len)
                .map(|j| us.iter().map(|u| u.num_examples as f64 * u.tensors[ti].data[j] as f64).sum::<f64>() / total)
                .collect()
        })
        .collect()
}

/// Noise the same way the optimizer does (through the protocol's re-export).
fn fedsearch_privacy_add(v: &mut [f32], std: f64, rng: &mut NoiseRng) {
    for x in v.iter_mut() {
        *x = (f64::from(*x) + std * rng.standard_normal()) as f32;
    }
}

fn new_agg() -> StreamingFedAvg {
    StreamingFedAvg::new(&federated_tensor_specs(FederationMode::Shared, D, N_DOCS))
}

#[test]
fn fedavg_equals_weighted_mean() {
    let us = updates(7);
    let mut agg = new_agg();
    for u in &us {
        agg.add(u, u.num_examples as f64).unwrap();
    }
    assert_eq!(agg.count(), 7);
    let out = agg.finish().unwrap();
    let reference = reference_mean(&us);
    for (t, r) in out.iter().zip(&reference) {
        for (x, y) in t.data.iter().zip(r) {
            assert!((*x as f64 - y).abs() <= 1e-7 * y.abs().max(1e-3), "{x} vs {y}");
        }
    }
}

#[test]
fn order_independent() {
    let us = updates(20);
    let mut a = new_agg();
    for u in &us {
        a.add(u, u.num_examples as f64).unwrap();
    }
    // a shuffled order, and tensors listed in a different order inside updates
    let mut rng = Rng(77);
    let mut idx: Vec<usize> = (0..us.len()).collect();
    for i in (1..idx.len()).rev() {
        idx.swap(i, rng.below(i + 1));
    }
    let mut b = new_agg();
    for &i in &idx {
        let mut u = us[i].clone();
        u.tensors.reverse();
        b.add(&u, u.num_examples as f64).unwrap();
    }
    let (fa, fb) = (a.finish().unwrap(), b.finish().unwrap());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.name, y.name);
        for (p, q) in x.data.iter().zip(&y.data) {
            assert!((p - q).abs() <= 1e-7 * p.abs().max(1e-6), "{p} vs {q}");
        }
    }
}

#[test]
fn rejects_bad_input_without_partial_update() {
    let mut agg = new_agg();
    let u = update(FederationMode::Shared, 1);
    assert!(matches!(agg.add(&u, 0.0), Err(ProtocolError::InvalidWeight(_))));
    assert!(matches!(agg.add(&u, f64::NAN), Err(ProtocolError::InvalidWeight(_))));
    let mut bad = u.clone();
    bad.tensors[3].data.pop();
    assert!(agg.add(&bad, 1.0).is_err());
    let mut bad = u.clone();
    bad.tensors.pop();
    assert!(agg.add(&bad, 1.0).is_err());
    assert_eq!(agg.count(), 0);
    assert_eq!(agg.finish(), Err(ProtocolError::EmptyAggregate));
    assert_eq!(agg, new_agg());
}

#[test]
fn state_persists_and_resumes() {
    let us = updates(6);
    let mut whole = new_agg();
    let mut part = new_agg();
    for (i, u) in us.iter().enumerate() {
        whole.add(u, u.num_examples as f64).unwrap();
        part.add(u, u.num_examples as f64).unwrap();
        if i == 2 {
            let bytes = part.to_bytes();
            part = StreamingFedAvg::from_bytes(&bytes).unwrap();
            // truncated state is rejected
            assert!(StreamingFedAvg::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        }
    }
    assert_eq!(whole, part);
    assert_eq!(whole.finish().unwrap(), part.finish().unwrap());
}

#[test]
fn fedavg_optimizer_applies_lr_times_delta() {
    let mut m = model(FederationMode::Shared);
    let before = m.clone();
    let delta = tensors(FederationMode::Shared, &mut Rng(5), 0.1);
    let mut st = OptimizerState::default();
    ServerOptimizer::FedAvg { lr: 0.5 }.apply(&mut m, &delta, &mut st, None).unwrap();
    assert_eq!(m.version, before.version + 1);
    for ((t, b), d) in m.tensors.iter().zip(&before.tensors).zip(&delta) {
        for ((x, y), g) in t.data.iter().zip(&b.data).zip(&d.data) {
            assert!((x - (y + 0.5 * g)).abs() < 1e-6);
        }
    }
    // central noise: same seed, same draw order → x + lr·(Δ + z)
    let mut m2 = before.clone();
    let mut rng = NoiseRng::from_seed([3; 32]);
    ServerOptimizer::FedAvg { lr: 1.0 }.apply(&mut m2, &delta, &mut st, Some((0.1, &mut rng))).unwrap();
    let mut rng = NoiseRng::from_seed([3; 32]);
    let mut noised = delta.clone();
    for t in &mut noised {
        fedsearch_privacy_add(&mut t.data, 0.1, &mut rng);
    }
    let mut moved = 0;
    for ((t, b), d) in m2.tensors.iter().zip(&before.tensors).zip(&noised) {
        for ((x, y), g) in t.data.iter().zip(&b.data).zip(&d.data) {
            assert!((x - (y + g)).abs() < 1e-6);
            moved += usize::from((x - y).abs() > 1e-3);
        }
    }
    assert!(moved > 10, "noise should move weights");
    // invalid noise std is an error and leaves the model untouched
    let snapshot = m2.clone();
    assert!(matches!(
        ServerOptimizer::FedAvg { lr: 1.0 }.apply(&mut m2, &delta, &mut st, Some((-1.0, &mut rng))),
        Err(ProtocolError::Privacy(_))
    ));
    assert_eq!(m2, snapshot);
}

#[test]
fn fedadam_matches_reddi_update() {
    let (lr, b1, b2, eps) = (0.01, 0.9, 0.99, 1e-3);
    let opt = ServerOptimizer::FedAdam { lr, beta1: b1, beta2: b2, eps };
    let mut m = model(FederationMode::Personal);
    let mut st = OptimizerState::default();
    let d1 = tensors(FederationMode::Personal, &mut Rng(1), 0.1);
    let d2 = tensors(FederationMode::Personal, &mut Rng(2), 0.1);
    let x0 = m.tensors[1].data[2] as f64;
    opt.apply(&mut m, &d1, &mut st, None).unwrap();
    opt.apply(&mut m, &d2, &mut st, None).unwrap();
    let (g1, g2) = (d1[1].data[2] as f64, d2[1].data[2] as f64);
    let m1 = (1.0 - b1) * g1;
    let v1 = (1.0 - b2) * g1 * g1;
    let x1 = x0 + lr * m1 / (v1.sqrt() + eps);
    let m2 = b1 * m1 + (1.0 - b1) * g2;
    let v2 = b2 * v1 + (1.0 - b2) * g2 * g2;
    let x2 = x1 + lr * m2 / (v2.sqrt() + eps);
    assert!((m.tensors[1].data[2] as f64 - x2).abs() < 1e-5, "{} vs {x2}", m.tensors[1].data[2]);
    assert_eq!(st.step, 2);
    let back = OptimizerState::from_bytes(&st.to_bytes()).unwrap();
    assert_eq!(back, st);
    // unknown tensor → error, model untouched
    let before = m.clone();
    let bad = vec![NamedTensor::zeros("nope", vec![1])];
    assert!(opt.apply(&mut m, &bad, &mut st, None).is_err());
    assert_eq!(m, before);
    assert!(ServerOptimizer::FedAdam { lr, beta1: 1.5, beta2: b2, eps }.check().is_err());
}
