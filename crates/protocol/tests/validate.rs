//! `validate_update` accepts good updates and rejects each bad case with the
//! right typed error and JSON body.

mod common;
use common::*;
use fedsearch_protocol::*;

fn check(u: &Update, mode: FederationMode) -> Result<(), ValidationError> {
    validate_update(u, &spec(mode))
}

#[test]
fn accepts_good_updates() {
    check(&update(FederationMode::Shared, 1), FederationMode::Shared).unwrap();
    check(&update(FederationMode::Personal, 1), FederationMode::Personal).unwrap();
    // stronger DP than required is fine
    let mut u = update(FederationMode::Shared, 2);
    u.dp.clip = 0.5;
    u.dp.noise_multiplier = 2.0;
    check(&u, FederationMode::Shared).unwrap();
}

#[test]
fn json_body_shape_mismatch() {
    let mut u = update(FederationMode::Shared, 1);
    let t = u.tensors.iter_mut().find(|t| t.name == HEAD_WEIGHT).unwrap();
    t.shape = vec![D, N_DOCS - 1];
    t.data.truncate((D * (N_DOCS - 1)) as usize);
    let err = check(&u, FederationMode::Shared).unwrap_err();
    assert_eq!(err.code(), "shape_mismatch");
    assert_eq!(
        serde_json::to_value(&err).unwrap(),
        serde_json::json!({"error":"shape_mismatch","tensor":"head.weight","expected":[8,5],"got":[8,4]})
    );
}

#[test]
fn rejects_each_bad_case() {
    use FederationMode::*;
    type Case = (&'static str, FederationMode, Box<dyn Fn(&mut Update)>);
    let cases: Vec<Case> = vec![
        ("wrong_federation", Shared, Box::new(|u| u.federation_id = "other".into())),
        ("empty_client_id", Shared, Box::new(|u| u.client_id.clear())),
        ("zero_examples", Shared, Box::new(|u| u.num_examples = 0)),
        ("wrong_base_version", Shared, Box::new(|u| u.base_version = 1)),
        ("wrong_mode", Shared, Box::new(|u| u.mode = Personal)),
        (
            "head_in_personal_mode",
            Personal,
            Box::new(|u| {
                u.mode = Personal;
                u.tensors.push(NamedTensor::zeros(HEAD_BIAS, vec![N_DOCS]));
            }),
        ),
        (
            "missing_tensor",
            Shared,
            Box::new(|u| {
                u.tensors.pop();
            }),
        ),
        ("unexpected_tensor", Shared, Box::new(|u| u.tensors.push(NamedTensor::zeros("extra", vec![1])))),
        (
            "duplicate_tensor",
            Shared,
            Box::new(|u| {
                let t = u.tensors[1].clone();
                u.tensors.push(t);
            }),
        ),
        ("shape_mismatch", Shared, Box::new(|u| u.tensors[1].shape = vec![D + 1])),
        (
            "data_length_mismatch",
            Shared,
            Box::new(|u| {
                u.tensors[1].data.pop();
            }),
        ),
        ("non_finite", Shared, Box::new(|u| u.tensors[2].data[3] = f32::NAN)),
        ("non_finite", Shared, Box::new(|u| u.tensors[0].data[0] = f32::INFINITY)),
        (
            // every value within the coordinate bound, the whole far beyond the norm bound
            "norm_too_large",
            Shared,
            Box::new(|u| u.tensors.iter_mut().for_each(|t| t.data.iter_mut().for_each(|x| *x = 5.0))),
        ),
        (
            // a noise-free update with its weight on one coordinate (the poisoning)
            "coordinate_too_large",
            Shared,
            Box::new(|u| u.tensors[2].data[1] = 21.0),
        ),
        ("weaker_dp", Shared, Box::new(|u| u.dp.clip = 2.0)),
        ("weaker_dp", Shared, Box::new(|u| u.dp.noise_multiplier = 0.5)),
        ("invalid_dp", Shared, Box::new(|u| u.dp.clip = f32::NAN)),
        ("invalid_dp", Shared, Box::new(|u| u.dp.delta = 1.5)),
        ("invalid_dp", Shared, Box::new(|u| u.dp.epsilon_spent = -1.0)),
    ];
    for (code, mode, mutate) in cases {
        let mut u = update(mode, 5);
        mutate(&mut u);
        let err = check(&u, mode).expect_err(code);
        assert_eq!(err.code(), code, "{err}");
        // every error serialises with its code as the "error" field
        let v = serde_json::to_value(&err).unwrap();
        assert_eq!(v["error"], code);
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn norm_bound_matches_formula() {
    let s = spec(FederationMode::Shared);
    let total = (D * D + D + D * N_DOCS + N_DOCS) as f64;
    assert!((s.max_norm - (1.0 + 1.0 * (total.sqrt() + 10.0))).abs() < 1e-9);
    let k = (2.0 * (2.0 * total / 1e-12).ln()).sqrt();
    assert!((s.max_abs - (1.0 + k) * (1.0 + 1e-3)).abs() < 1e-9, "{}", s.max_abs);
    // just under the bound passes, just over fails
    let mut u = update(FederationMode::Shared, 3);
    let n = u.tensors.iter().map(|t| t.data.len()).sum::<usize>() as f64;
    let per = (s.max_norm * 0.999 / n.sqrt()) as f32;
    u.tensors.iter_mut().for_each(|t| t.data.iter_mut().for_each(|x| *x = per));
    validate_update(&u, &s).unwrap();
    let per = (s.max_norm * 1.001 / n.sqrt()) as f32;
    u.tensors.iter_mut().for_each(|t| t.data.iter_mut().for_each(|x| *x = per));
    assert_eq!(validate_update(&u, &s).unwrap_err().code(), "norm_too_large");
}
