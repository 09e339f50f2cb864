//! Shared helpers for the protocol integration tests: a tiny deterministic
//! PRNG and sample updates/models.
#![allow(dead_code)]

use fedsearch_protocol::*;

/// SplitMix64: deterministic, dependency-free test randomness.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub const D: u32 = 8;
pub const N_DOCS: u32 = 5;

pub fn tensors(mode: FederationMode, rng: &mut Rng, scale: f32) -> Vec<NamedTensor> {
    federated_tensor_specs(mode, D, N_DOCS)
        .into_iter()
        .map(|s| {
            let n = s.numel();
            NamedTensor::new(s.name, s.shape, (0..n).map(|_| rng.unit() * scale).collect())
        })
        .collect()
}

pub fn update(mode: FederationMode, seed: u64) -> Update {
    let mut rng = Rng(seed);
    Update {
        federation_id: "fed".into(),
        round: 3,
        client_id: format!("client-{seed}"),
        base_version: 2,
        num_examples: 1 + seed % 17,
        mode,
        dp: DpParams { clip: 1.0, noise_multiplier: 1.0, delta: 1e-5, epsilon_spent: 0.5 },
        tensors: tensors(mode, &mut rng, 0.01),
    }
}

pub fn spec(mode: FederationMode) -> UpdateSpec {
    UpdateSpec::for_federation("fed", mode, D, N_DOCS, 2, 1.0, 1.0).unwrap()
}

pub fn model(mode: FederationMode) -> GlobalModel {
    let mut m = GlobalModel::initial("fed", mode, D, N_DOCS, Some((0..N_DOCS).map(|i| format!("doc-{i}")).collect()));
    m.version = 7;
    m
}
