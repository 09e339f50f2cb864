//! Spreading the training pairs over the clients (IID or by document) and the per-client seeds
//! derived from `--seed`.

use super::*;

/// 32 bytes derived from the seed and a purpose, for per-client generators.
pub(super) fn derive_seed(seed: u64, purpose: &str, a: u64, b: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fedsearch-simulate\0");
    h.update(purpose.as_bytes());
    h.update(seed.to_le_bytes());
    h.update(a.to_le_bytes());
    h.update(b.to_le_bytes());
    h.finalize().into()
}

pub(super) fn derive_u64(seed: u64, purpose: &str, a: u64, b: u64) -> u64 {
    let s = derive_seed(seed, purpose, a, b);
    u64::from_le_bytes(s[..8].try_into().expect("8 bytes"))
}

/// Splits pair indices across clients: IID (dealt at random) or by document (disjoint sets).
pub(super) fn split_pairs(
    pairs: &[(String, usize)],
    clients: usize,
    split: SplitArg,
    seed: u64,
) -> CliResult<Vec<Vec<usize>>> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_u64(seed, "split", 0, 0));
    let mut out = vec![Vec::new(); clients];
    match split {
        SplitArg::Iid => {
            if clients > pairs.len() {
                return Err(CliError::Input(format!(
                    "--clients {clients} is more than the {} training pairs",
                    pairs.len()
                )));
            }
            let mut order: Vec<usize> = (0..pairs.len()).collect();
            order.shuffle(&mut rng);
            for (k, i) in order.into_iter().enumerate() {
                out[k % clients].push(i);
            }
        }
        SplitArg::NonIid => {
            let mut docs: Vec<usize> = pairs.iter().map(|(_, d)| *d).collect::<HashSet<_>>().into_iter().collect();
            docs.sort_unstable();
            if clients > docs.len() {
                return Err(CliError::Input(format!(
                    "--split non-iid needs at least one document per client: --clients {clients} is more than the {} documents with training pairs",
                    docs.len()
                )));
            }
            docs.shuffle(&mut rng);
            let owner: std::collections::HashMap<usize, usize> =
                docs.iter().enumerate().map(|(k, &d)| (d, k % clients)).collect();
            for (i, (_, d)) in pairs.iter().enumerate() {
                out[owner[d]].push(i);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(docs: usize, per_doc: usize) -> Vec<(String, usize)> {
        (0..docs).flat_map(|d| (0..per_doc).map(move |k| (format!("q{d}-{k}"), d))).collect()
    }

    #[test]
    fn non_iid_split_gives_disjoint_documents_and_covers_all_pairs() {
        let p = pairs(10, 3);
        let s = split_pairs(&p, 3, SplitArg::NonIid, 5).unwrap();
        let docs: Vec<HashSet<usize>> = s.iter().map(|c| c.iter().map(|&i| p[i].1).collect()).collect();
        for a in 0..3 {
            assert!(!docs[a].is_empty());
            for b in a + 1..3 {
                assert!(docs[a].is_disjoint(&docs[b]));
            }
        }
        let mut all: Vec<usize> = s.concat();
        all.sort_unstable();
        assert_eq!(all, (0..p.len()).collect::<Vec<_>>());
        assert!(split_pairs(&p, 11, SplitArg::NonIid, 5).is_err());
    }

    #[test]
    fn iid_split_is_balanced_and_seeded() {
        let p = pairs(10, 3);
        let s = split_pairs(&p, 4, SplitArg::Iid, 5).unwrap();
        assert!(s.iter().all(|c| c.len() == 7 || c.len() == 8));
        assert_eq!(s, split_pairs(&p, 4, SplitArg::Iid, 5).unwrap());
        assert_ne!(s, split_pairs(&p, 4, SplitArg::Iid, 6).unwrap());
    }
}
