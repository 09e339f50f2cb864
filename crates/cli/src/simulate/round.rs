//! One federated round of `fedsearch simulate`, either plain (each update encoded, decoded,
//! validated and added to a streaming FedAvg, as the worker does) or secure (the SecAgg+ phases
//! of `fedsearch_protocol::secagg` with every message encoded, and the server decoding only the
//! sum). Clients drop out with `--dropout`: in a plain round their update never arrives; in a
//! secure round each drops after a uniformly drawn phase (keys, shares or masked input).

use super::*;
use crate::parallel::{on_threads, threads};
use fedsearch_privacy::SkellamParams;
use fedsearch_protocol::secagg::{
    EncryptedShare, SecAggClient, SecAggError, SecAggServer, SessionId, decode_masked_input, encode_masked_input,
    message_bytes,
};
use fedsearch_protocol::{build_secure_update, secure_mean};
use rand::Rng;

/// What the round shares with every client.
pub(super) struct RoundCtx<'a> {
    pub args: &'a SimulateArgs,
    pub enc: &'a SentenceEncoder,
    pub device: &'a Device,
    pub keys: Option<&'a [f32]>,
    pub specs: &'a [TensorSpec],
    pub mode: FederationMode,
    pub wire: Encoding,
    pub clip: Option<f32>,
    pub sigma: Option<f32>,
    /// Distributed DP and quantisation under secure aggregation; `mu = 0` without noise.
    pub skellam: Option<SkellamParams>,
    pub pb: &'a indicatif::ProgressBar,
    pub d: usize,
    pub n_docs: usize,
}

/// What a round did.
#[derive(Default)]
pub(super) struct RoundOutcome {
    /// The mean delta to apply; `None` when the round was not published.
    pub mean: Option<Vec<NamedTensor>>,
    /// Why it was not published.
    pub unpublished: Option<String>,
    /// Clients whose update is in the mean.
    pub survivors: usize,
    /// Clients that trained this round.
    pub trained: usize,
    /// Bytes of the updates (plain) or masked inputs (secure) uploaded.
    pub bytes_sum: usize,
    /// Every other secure-aggregation byte, up and down: keys, roster, shares, survivors, reveals.
    pub secagg_bytes_sum: usize,
    pub norm_sum: f64,
    pub loss_sum: f64,
    pub slowest_client_s: f64,
    pub server_s: f64,
    /// Server time spent removing masks (secure rounds).
    pub unmask_s: f64,
    /// Slowest client's secure-aggregation work: keys, sealing, masking, unmasking.
    pub secagg_client_s: f64,
}

/// Phase after which each client drops out of this round (0: keys, 1: shares, 2: masked input).
fn dropouts(args: &SimulateArgs, round: usize) -> Vec<Option<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_u64(args.seed, "dropout", round as u64, 0));
    (0..args.clients)
        .map(|_| if rng.random::<f64>() < args.dropout { Some(rng.random_range(0..3u8)) } else { None })
        .collect()
}

/// Trains one client from the global model and returns its delta in spec order.
async fn local_deltas(
    ctx: &RoundCtx<'_>,
    client: &mut Client,
    c: usize,
    round: usize,
    base: &HostModel,
) -> CliResult<(Vec<NamedTensor>, f64)> {
    let args = ctx.args;
    // The client's starting point: the global model (+ its own head in personal mode).
    let start = client.start_from(base, ctx.mode);
    let model = start.to_retriever(ctx.keys, ctx.device);
    let cfg = TrainConfig {
        epochs: args.local_steps,
        batch_size: args.batch_size,
        head_lr: args.head_lr,
        adapter_lr: args.adapter_lr,
        holdout_fraction: 0.0,
        patience: usize::MAX,
        check_every: None,
        keep_last_epoch: false,
        seed: derive_u64(args.seed, "local-shuffle", round as u64, c as u64),
        max_steps: Some(args.local_steps),
        pull_to_keys: args.head_pull,
    };
    let inputs = match args.train {
        TrainArg::Head => TrainInputs::Cached(&client.features),
        TrainArg::Adapter => TrainInputs::Texts { encoder: ctx.enc, texts: &client.texts },
    };
    let done_before = ((round - 1) * args.clients + c) * args.local_steps;
    let pb = ctx.pb;
    let (trained, report) = train(model, inputs, &client.targets, &cfg, ctx.device, &mut |p| {
        pb.set_position((done_before + p.step) as u64);
        pb.set_message(format!("r{round} c{c} loss {:.3}", p.loss));
        true
    })
    .await?;
    let local = HostModel::from_retriever(&trained).await?;
    let mut deltas = Vec::with_capacity(ctx.specs.len());
    for s in ctx.specs {
        deltas.push(NamedTensor::new(s.name.clone(), s.shape.clone(), local.delta(&start, &s.name)?));
    }
    if ctx.mode == FederationMode::Personal {
        client.head_w = local.head_w;
        client.head_b = local.head_b;
    }
    Ok((deltas, f64::from(report.final_loss)))
}

/// What one client sends in a round (an encoded update or masked input), and what it cost.
struct Upload {
    bytes: Vec<u8>,
    /// Final local training loss.
    loss: f64,
    norm_before_clip: f64,
    /// The client's whole local work.
    seconds: f64,
    /// Of that, secure aggregation's part (quantising, noise, masking); 0 in plain rounds.
    secagg_s: f64,
    /// Bytes of the sealed shares it downloaded (secure rounds).
    shares_bytes: usize,
}

/// One client of a plain round: trains from the global model, builds and encodes its update.
#[allow(clippy::too_many_arguments)]
async fn plain_upload(
    ctx: &RoundCtx<'_>,
    client: &mut Client,
    c: usize,
    round: usize,
    global: &GlobalModel,
    base: &HostModel,
    spec: &UpdateSpec,
    epsilon: Option<f64>,
) -> CliResult<Upload> {
    let t_client = Instant::now();
    let (deltas, loss) = local_deltas(ctx, client, c, round, base).await?;
    let privacy = match (ctx.clip, ctx.sigma, client.noise.as_mut()) {
        (Some(clip), Some(noise_multiplier), Some(rng)) => UpdatePrivacy::Gaussian { clip, noise_multiplier, rng },
        (Some(clip), None, _) => UpdatePrivacy::ClipOnly { clip },
        _ => UpdatePrivacy::Exact,
    };
    let header = UpdateHeader {
        federation_id: FEDERATION_ID.into(),
        round: round as u64,
        client_id: client.id.clone(),
        base_version: global.version,
        mode: ctx.mode,
        dp: DpParams {
            clip: spec.clip,
            noise_multiplier: spec.noise_multiplier,
            delta: ctx.args.delta,
            epsilon_spent: epsilon.unwrap_or(0.0),
        },
    };
    let built = build_update(header, deltas, privacy).map_err(proto("building an update"))?;
    let bytes = encode_update(&built.update, ctx.wire);
    let seconds = t_client.elapsed().as_secs_f64();
    Ok(Upload { bytes, loss, norm_before_clip: built.norm_before_clip, seconds, secagg_s: 0.0, shares_bytes: 0 })
}

/// A round without secure aggregation: each arriving update is encoded, decoded, validated and
/// added with weight 1.
pub(super) async fn plain_round(
    ctx: &RoundCtx<'_>,
    clients: &mut [Client],
    round: usize,
    global: &GlobalModel,
    epsilon: Option<f64>,
) -> CliResult<RoundOutcome> {
    let args = ctx.args;
    let base = host_model(global, ctx.d, ctx.n_docs)?;
    let spec = server_spec(ctx.mode, ctx.d, ctx.n_docs, global.version, ctx.clip, ctx.sigma, args.delta)?;
    let drops = dropouts(args, round);
    let mut agg = StreamingFedAvg::new(ctx.specs);
    let mut out = RoundOutcome::default();
    let mut live: Vec<(usize, &mut Client)> =
        clients.iter_mut().enumerate().filter(|(c, _)| drops[*c].is_none()).collect();
    // Clients train side by side, a wave of one per core at a time; the server takes their
    // uploads in client order, as before (each client's randomness is its own, so the result
    // does not depend on the number of threads).
    for wave in live.chunks_mut(threads()) {
        let uploads = on_threads(wave, |(c, client)| {
            pollster::block_on(plain_upload(ctx, client, *c, round, global, &base, &spec, epsilon))
        });
        for upload in uploads {
            let upload = upload?;
            out.loss_sum += upload.loss;
            out.trained += 1;
            out.norm_sum += upload.norm_before_clip;
            out.bytes_sum += upload.bytes.len();
            out.slowest_client_s = out.slowest_client_s.max(upload.seconds);

            // The server: decode, validate, accumulate — as the worker does.
            let t_server = Instant::now();
            let received = decode_update(&upload.bytes).map_err(proto("decoding an update"))?;
            validate_update(&received, &spec).map_err(proto("the server rejected an update"))?;
            agg.add(&received, 1.0).map_err(proto("aggregation"))?;
            out.survivors += 1;
            out.server_s += t_server.elapsed().as_secs_f64();
        }
    }
    if out.survivors < args.min_survivor_count() {
        out.unpublished =
            Some(format!("{} of the {} needed updates arrived", out.survivors, args.min_survivor_count()));
        return Ok(out);
    }
    let t_server = Instant::now();
    out.mean = Some(agg.finish().map_err(proto("aggregation"))?);
    out.server_s += t_server.elapsed().as_secs_f64();
    Ok(out)
}

/// A secure round: SecAgg+ over every client, each message encoded as it would travel, dropouts
/// at random phases, the server decoding only the sum. Too few clients in any phase leaves the
/// round unpublished (and unmasks nothing).
pub(super) async fn secure_round(
    ctx: &RoundCtx<'_>,
    clients: &mut [Client],
    round: usize,
    global: &GlobalModel,
) -> CliResult<RoundOutcome> {
    let args = ctx.args;
    let params = ctx.skellam.expect("secure rounds have quantisation parameters");
    let base = host_model(global, ctx.d, ctx.n_docs)?;
    let drops = dropouts(args, round);
    let k = args.secagg_neighbours;
    let session = SessionId::new(FEDERATION_ID, round as u64, params.dim, k);
    let mut server = SecAggServer::new(session, params.dim, k, args.min_survivor_count());
    let mut out = RoundOutcome::default();
    let mut client_s = vec![0.0f64; clients.len()];
    let unpublished = |mut out: RoundOutcome, e: SecAggError, client_s: &[f64]| {
        out.unpublished = Some(e.to_string());
        out.secagg_client_s = client_s.iter().copied().fold(0.0, f64::max);
        Ok(out)
    };
    let protocol = |e: SecAggError| CliError::Tool(e.to_string());

    // Phase 1: keys.
    let mut sessions: Vec<Option<SecAggClient>> = Vec::with_capacity(clients.len());
    for (c, client) in clients.iter_mut().enumerate() {
        let t = Instant::now();
        let rng = client.noise.as_mut().expect("secure clients have a generator");
        let (sc, keys) = SecAggClient::new(c as u32, session, args.min_survivor_count(), rng);
        client_s[c] += t.elapsed().as_secs_f64();
        out.secagg_bytes_sum += message_bytes(&keys);
        let t = Instant::now();
        server.add_keys(keys).map_err(protocol)?;
        out.server_s += t.elapsed().as_secs_f64();
        sessions.push(Some(sc));
    }
    let roster = match server.close_keys() {
        Ok(r) => r,
        Err(e) => return unpublished(out, e, &client_s),
    };
    let roster_bytes = message_bytes(&roster);

    // Phase 2: sealed shares (clients that dropped after phase 1 send none).
    for (c, client) in clients.iter_mut().enumerate() {
        if drops[c] == Some(0) {
            sessions[c] = None;
            continue;
        }
        let sc = sessions[c].as_mut().expect("a session per client");
        let t = Instant::now();
        let rng = client.noise.as_mut().expect("secure clients have a generator");
        let shares = sc.share_keys(&roster, k, rng).map_err(protocol)?;
        client_s[c] += t.elapsed().as_secs_f64();
        out.secagg_bytes_sum += roster_bytes + message_bytes(&shares);
        let t = Instant::now();
        server.add_shares(c as u32, shares).map_err(protocol)?;
        out.server_s += t.elapsed().as_secs_f64();
    }
    if let Err(e) = server.close_shares() {
        return unpublished(out, e, &client_s);
    }

    // Phase 3: train, clip, quantise, noise, mask, encode — clients side by side, a wave of one
    // per core at a time; the server adds the bytes it gets in client order.
    for (c, slot) in sessions.iter_mut().enumerate() {
        if drops[c] == Some(1) {
            *slot = None;
        }
    }
    let mut live: Vec<(usize, &mut Client, &mut SecAggClient, Vec<EncryptedShare>)> = clients
        .iter_mut()
        .zip(sessions.iter_mut())
        .enumerate()
        .filter_map(|(c, (client, slot))| slot.as_mut().map(|sc| (c, client, sc, server.shares_for(c as u32))))
        .collect();
    for wave in live.chunks_mut(threads()) {
        let uploads = on_threads(wave, |(c, client, sc, shares)| {
            let t_client = Instant::now();
            let (deltas, loss) = pollster::block_on(local_deltas(ctx, client, *c, round, &base))?;
            let t = Instant::now();
            let rng = client.noise.as_mut().expect("secure clients have a generator");
            let built = build_secure_update(&deltas, &params, params.mu > 0.0, rng, sc, shares)
                .map_err(proto("building a secure update"))?;
            let bytes = encode_masked_input(&built.masked);
            Ok(Upload {
                bytes,
                loss,
                norm_before_clip: built.norm_before_clip,
                secagg_s: t.elapsed().as_secs_f64(),
                seconds: t_client.elapsed().as_secs_f64(),
                shares_bytes: message_bytes(&*shares),
            })
        });
        for ((c, ..), upload) in wave.iter().zip(uploads) {
            let upload = upload?;
            out.loss_sum += upload.loss;
            out.trained += 1;
            client_s[*c] += upload.secagg_s;
            out.slowest_client_s = out.slowest_client_s.max(upload.seconds);
            out.norm_sum += upload.norm_before_clip;
            out.secagg_bytes_sum += upload.shares_bytes;
            out.bytes_sum += upload.bytes.len();
            let t = Instant::now();
            let received = decode_masked_input(&upload.bytes).map_err(protocol)?;
            server.add_masked(&received).map_err(protocol)?;
            out.server_s += t.elapsed().as_secs_f64();
        }
    }
    let survivors = match server.close_masked() {
        Ok(s) => s,
        Err(e) => return unpublished(out, e, &client_s),
    };

    // Phase 4: each client still there answers once; the server removes the masks.
    for (c, slot) in sessions.iter_mut().enumerate() {
        if drops[c] == Some(2) {
            *slot = None;
        }
        let Some(sc) = slot.as_mut() else { continue };
        let t = Instant::now();
        // A client that sees too few surviving neighbours refuses to reveal; the round goes on
        // without its answer.
        let Ok(reveals) = sc.unmask(&survivors) else { continue };
        client_s[c] += t.elapsed().as_secs_f64();
        out.secagg_bytes_sum += message_bytes(&survivors) + message_bytes(&reveals);
        let t = Instant::now();
        server.add_reveals(c as u32, reveals).map_err(protocol)?;
        out.server_s += t.elapsed().as_secs_f64();
    }
    let t = Instant::now();
    let (sum, n) = match server.finish() {
        Ok(r) => r,
        Err(e) => return unpublished(out, e, &client_s),
    };
    out.unmask_s = t.elapsed().as_secs_f64();
    out.mean = Some(secure_mean(&sum, n, &params, ctx.specs).map_err(proto("decoding the secure sum"))?);
    out.server_s += t.elapsed().as_secs_f64();
    out.survivors = n;
    out.secagg_client_s = client_s.iter().copied().fold(0.0, f64::max);
    Ok(out)
}
