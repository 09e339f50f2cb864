//! The simulated server's side: what it demands of a round's updates (the worker's validation
//! spec for this federation).

use super::*;

/// What the server demands of this round's updates.
pub(super) fn server_spec(
    mode: FederationMode,
    d: usize,
    n_docs: usize,
    version: u64,
    clip: Option<f32>,
    sigma: Option<f32>,
    delta: f64,
) -> CliResult<UpdateSpec> {
    let mut spec = match (clip, sigma) {
        (Some(c), Some(s)) => UpdateSpec::for_federation(FEDERATION_ID, mode, d as u32, n_docs as u32, version, c, s)
            .map_err(proto("federation spec"))?,
        // Clip only: the update's norm can be at most C (plus f16 rounding, relative error
        // below 2⁻¹¹ per value); no noise is required.
        (Some(c), None) => UpdateSpec {
            federation_id: FEDERATION_ID.into(),
            mode,
            base_version: version,
            tensors: federated_tensor_specs(mode, d as u32, n_docs as u32),
            clip: c,
            noise_multiplier: 0.0,
            max_delta: None,
            max_norm: f64::from(c) * (1.0 + 1e-3),
            max_abs: f64::from(c) * (1.0 + 1e-3),
        },
        // No DP: the federation declares no bound.
        _ => UpdateSpec {
            federation_id: FEDERATION_ID.into(),
            mode,
            base_version: version,
            tensors: federated_tensor_specs(mode, d as u32, n_docs as u32),
            clip: f32::MAX,
            noise_multiplier: 0.0,
            max_delta: None,
            max_norm: f64::INFINITY,
            max_abs: f64::INFINITY,
        },
    };
    spec.max_delta = Some(delta);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_dp_spec_accepts_large_updates_and_dp_spec_bounds_them() {
        let s = server_spec(FederationMode::Shared, 4, 3, 0, None, None, 1e-5).unwrap();
        assert!(s.max_norm.is_infinite());
        let s = server_spec(FederationMode::Shared, 4, 3, 0, Some(1.0), Some(1.0), 1e-5).unwrap();
        assert!(s.max_norm.is_finite());
        let s = server_spec(FederationMode::Personal, 4, 3, 0, Some(2.0), None, 1e-5).unwrap();
        assert_eq!(s.tensors.len(), 2);
        assert!(s.max_norm < 2.01);
    }
}
