//! Compact little-endian binary encoding for `Update` and `GlobalModel`.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic  "FSRP" (4 bytes)
//! schema u16      = SCHEMA_VERSION
//! kind   u8       1 = Update, 2 = GlobalModel, 3/4 = internal state blobs
//! enc    u8       0 = f32 payloads, 1 = f16 payloads
//! body   ...      (see encode_update / encode_global_model)
//! crc    u32      CRC-32 (IEEE) of every preceding byte
//! ```
//! Strings are `u32 length + UTF-8`. A tensor is `name, u8 ndim, ndim × u32 dims,
//! numel × (f32|f16)`. Decoding never panics and validates every declared count
//! against the bytes that remain *before* allocating.

use crate::error::ProtocolError;
use crate::types::{DpParams, FederationMode, GlobalModel, NamedTensor, Update};
use half::f16;

/// First four bytes of every fedsearch binary message.
pub const MAGIC: [u8; 4] = *b"FSRP";
/// Binary schema version written by this build.
pub const SCHEMA_VERSION: u16 = 1;
/// Bytes before the body: magic + schema + kind + encoding.
pub const HEADER_LEN: usize = 8;
/// Trailing CRC-32.
pub const TRAILER_LEN: usize = 4;
/// Maximum tensor rank accepted on the wire.
pub const MAX_DIMS: u32 = 8;
/// Maximum tensors in one message (an update or model has at most four). A declared count is
/// otherwise bounded only by the bytes present, and each tensor costs ~100 bytes of memory for
/// as little as 9 wire bytes: without this cap a crafted body decodes to ~10× its size.
pub const MAX_TENSORS: u32 = 64;

pub(crate) const KIND_UPDATE: u8 = 1;
pub(crate) const KIND_GLOBAL_MODEL: u8 = 2;
pub(crate) const KIND_AGGREGATE_STATE: u8 = 3;
pub(crate) const KIND_OPTIMIZER_STATE: u8 = 4;

/// How tensor payloads are stored in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Exact 32-bit floats (4 bytes per value).
    #[default]
    F32,
    /// IEEE half precision (2 bytes per value); values beyond ±65504 become ±inf.
    F16,
}

impl Encoding {
    fn to_byte(self) -> u8 {
        match self {
            Encoding::F32 => 0,
            Encoding::F16 => 1,
        }
    }
    fn from_byte(b: u8) -> Result<Self, ProtocolError> {
        match b {
            0 => Ok(Encoding::F32),
            1 => Ok(Encoding::F16),
            other => Err(ProtocolError::UnknownEncoding(other)),
        }
    }
    /// Bytes per tensor element.
    pub fn elem_size(self) -> usize {
        match self {
            Encoding::F32 => 4,
            Encoding::F16 => 2,
        }
    }
}

// ---------------------------------------------------------------- writing

pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(kind: u8, enc: Encoding, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + HEADER_LEN + TRAILER_LEN);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
        buf.push(kind);
        buf.push(enc.to_byte());
        Self { buf }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f32(&mut self, v: f32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Strings longer than u32::MAX bytes are truncated (never happens in practice).
    pub(crate) fn str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let n = bytes.len().min(u32::MAX as usize);
        self.u32(n as u32);
        self.buf.extend_from_slice(&bytes[..n]);
    }
    pub(crate) fn f32_slice(&mut self, data: &[f32], enc: Encoding) {
        match enc {
            Encoding::F32 => {
                for x in data {
                    self.buf.extend_from_slice(&x.to_le_bytes());
                }
            }
            Encoding::F16 => {
                for x in data {
                    self.buf.extend_from_slice(&f16::from_f32(*x).to_le_bytes());
                }
            }
        }
    }
    pub(crate) fn f64_slice(&mut self, data: &[f64]) {
        for x in data {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// Writes a tensor. The element count written is `data.len()`; if it does
    /// not match the shape the decoder will reject the message, so callers
    /// should validate first.
    pub(crate) fn tensor(&mut self, t: &NamedTensor, enc: Encoding) {
        self.str(&t.name);
        let ndim = t.shape.len().min(u8::MAX as usize);
        self.u8(ndim as u8);
        for d in &t.shape[..ndim] {
            self.u32(*d);
        }
        self.f32_slice(&t.data, enc);
    }
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

fn tensor_encoded_len(t: &NamedTensor, enc: Encoding) -> usize {
    4 + t.name.len() + 1 + 4 * t.shape.len() + t.data.len() * enc.elem_size()
}

// ---------------------------------------------------------------- reading

pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        if n > self.remaining() {
            return Err(ProtocolError::Truncated { what, needed: n as u64, available: self.remaining() as u64 });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ProtocolError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn f32(&mut self, what: &'static str) -> Result<f32, ProtocolError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn f64(&mut self, what: &'static str) -> Result<f64, ProtocolError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, ProtocolError> {
        let len = self.u32(what)? as u64;
        if len > self.remaining() as u64 {
            return Err(ProtocolError::LengthTooLarge { what, declared: len, available: self.remaining() as u64 });
        }
        let bytes = self.take(len as usize, what)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| ProtocolError::InvalidUtf8 { what })
    }
    /// Reads a u32 element count where each element needs at least
    /// `min_elem_bytes`; errors (without allocating) if they cannot fit.
    pub(crate) fn count(&mut self, what: &'static str, min_elem_bytes: usize) -> Result<usize, ProtocolError> {
        let n = self.u32(what)? as u64;
        let need = n.saturating_mul(min_elem_bytes as u64);
        if need > self.remaining() as u64 {
            return Err(ProtocolError::LengthTooLarge { what, declared: n, available: self.remaining() as u64 });
        }
        Ok(n as usize)
    }
    pub(crate) fn f32_vec(&mut self, numel: u64, enc: Encoding, what: &'static str) -> Result<Vec<f32>, ProtocolError> {
        let bytes = numel.saturating_mul(enc.elem_size() as u64);
        if bytes > self.remaining() as u64 {
            return Err(ProtocolError::LengthTooLarge { what, declared: numel, available: self.remaining() as u64 });
        }
        let raw = self.take(bytes as usize, what)?;
        Ok(match enc {
            Encoding::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Encoding::F16 => raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        })
    }
    pub(crate) fn f64_vec(&mut self, numel: u64, what: &'static str) -> Result<Vec<f64>, ProtocolError> {
        let bytes = numel.saturating_mul(8);
        if bytes > self.remaining() as u64 {
            return Err(ProtocolError::LengthTooLarge { what, declared: numel, available: self.remaining() as u64 });
        }
        let raw = self.take(bytes as usize, what)?;
        Ok(raw.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect())
    }
    /// Reads a tensor name and shape, returning the element count.
    pub(crate) fn tensor_header(&mut self) -> Result<(String, Vec<u32>, u64), ProtocolError> {
        let name = self.string("tensor name")?;
        let ndim = self.u8("tensor rank")? as u32;
        if ndim > MAX_DIMS {
            return Err(ProtocolError::TooManyDims { tensor: name, ndim, max: MAX_DIMS });
        }
        let mut shape = Vec::with_capacity(ndim as usize);
        let mut numel: u64 = 1;
        for _ in 0..ndim {
            let d = self.u32("tensor dimension")?;
            numel = numel.saturating_mul(d as u64);
            shape.push(d);
        }
        Ok((name, shape, numel))
    }
    pub(crate) fn tensor(&mut self, enc: Encoding) -> Result<NamedTensor, ProtocolError> {
        let (name, shape, numel) = self.tensor_header()?;
        let data = self.f32_vec(numel, enc, "tensor data")?;
        Ok(NamedTensor { name, shape, data })
    }
    pub(crate) fn tensors(&mut self, enc: Encoding) -> Result<Vec<NamedTensor>, ProtocolError> {
        // smallest tensor: 4 (name len) + 1 (rank) = 5 bytes
        let n = self.count("tensor count", 5)?;
        if n > MAX_TENSORS as usize {
            return Err(ProtocolError::TooManyTensors { count: n as u64, max: MAX_TENSORS });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.tensor(enc)?);
        }
        Ok(out)
    }
    pub(crate) fn finish(self) -> Result<(), ProtocolError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(ProtocolError::TrailingBytes(n)),
        }
    }
}

/// Checks framing (magic, schema, kind, checksum) and returns a reader over
/// the body plus the payload encoding.
pub(crate) fn open_frame<'a>(
    data: &'a [u8],
    kind: u8,
    kind_name: &'static str,
    verify_crc: bool,
) -> Result<(Reader<'a>, Encoding), ProtocolError> {
    let mut header = Reader::new(data);
    let (found_kind, enc) = read_header(&mut header)?;
    if found_kind != kind {
        return Err(ProtocolError::WrongKind { expected: kind_name, found: found_kind });
    }
    if header.remaining() < TRAILER_LEN {
        return Err(ProtocolError::Truncated {
            what: "checksum",
            needed: TRAILER_LEN as u64,
            available: header.remaining() as u64,
        });
    }
    let body_end = data.len() - TRAILER_LEN;
    if verify_crc {
        let t = &data[body_end..];
        let expected = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let computed = crc32fast::hash(&data[..body_end]);
        if expected != computed {
            return Err(ProtocolError::ChecksumMismatch { expected, computed });
        }
    }
    Ok((Reader::new(&data[HEADER_LEN..body_end]), enc))
}

/// The payload encoding a message declares, after checking magic and schema.
pub fn peek_encoding(data: &[u8]) -> Result<Encoding, ProtocolError> {
    read_header(&mut Reader::new(data)).map(|(_, enc)| enc)
}

/// Reads and checks the fixed header (magic, schema version); returns the kind byte and the
/// payload encoding.
fn read_header(r: &mut Reader<'_>) -> Result<(u8, Encoding), ProtocolError> {
    let magic: [u8; 4] = r.array("magic")?;
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic { found: magic, expected: MAGIC });
    }
    let schema = u16::from_le_bytes(r.array("schema version")?);
    if schema != SCHEMA_VERSION {
        return Err(ProtocolError::UnsupportedVersion { found: schema, supported: SCHEMA_VERSION });
    }
    let kind = r.u8("message kind")?;
    Ok((kind, Encoding::from_byte(r.u8("encoding")?)?))
}

// ---------------------------------------------------------------- Update

/// Encodes an update. Tensor payloads use `enc`.
pub fn encode_update(u: &Update, enc: Encoding) -> Vec<u8> {
    let cap = 64
        + u.federation_id.len()
        + u.client_id.len()
        + u.tensors.iter().map(|t| tensor_encoded_len(t, enc)).sum::<usize>();
    let mut w = Writer::new(KIND_UPDATE, enc, cap);
    w.str(&u.federation_id);
    w.u64(u.round);
    w.str(&u.client_id);
    w.u64(u.base_version);
    w.u64(u.num_examples);
    w.u8(u.mode.to_byte());
    w.f32(u.dp.clip);
    w.f32(u.dp.noise_multiplier);
    w.f64(u.dp.delta);
    w.f64(u.dp.epsilon_spent);
    w.u32(u.tensors.len().min(u32::MAX as usize) as u32);
    for t in &u.tensors {
        w.tensor(t, enc);
    }
    w.finish()
}

/// Decodes an update, verifying framing and checksum.
pub fn decode_update(data: &[u8]) -> Result<Update, ProtocolError> {
    decode_update_inner(data, true)
}

/// Like [`decode_update`] but skips the checksum so fuzzers reach the body
/// parser. Not for production use.
#[doc(hidden)]
pub fn decode_update_ignoring_checksum(data: &[u8]) -> Result<Update, ProtocolError> {
    decode_update_inner(data, false)
}

fn decode_update_inner(data: &[u8], verify_crc: bool) -> Result<Update, ProtocolError> {
    let (mut r, enc) = open_frame(data, KIND_UPDATE, "update", verify_crc)?;
    let federation_id = r.string("federation id")?;
    let round = r.u64("round")?;
    let client_id = r.string("client id")?;
    let base_version = r.u64("base version")?;
    let num_examples = r.u64("num examples")?;
    let mode_b = r.u8("mode")?;
    let mode = FederationMode::from_byte(mode_b).ok_or(ProtocolError::UnknownMode(mode_b))?;
    let dp = DpParams {
        clip: r.f32("dp clip")?,
        noise_multiplier: r.f32("dp noise multiplier")?,
        delta: r.f64("dp delta")?,
        epsilon_spent: r.f64("dp epsilon spent")?,
    };
    let tensors = r.tensors(enc)?;
    r.finish()?;
    Ok(Update { federation_id, round, client_id, base_version, num_examples, mode, dp, tensors })
}

// ---------------------------------------------------------------- GlobalModel

/// Encodes a global model. Tensor payloads use `enc`.
pub fn encode_global_model(m: &GlobalModel, enc: Encoding) -> Vec<u8> {
    let cap = 64
        + m.federation_id.len()
        + m.tensors.iter().map(|t| tensor_encoded_len(t, enc)).sum::<usize>()
        + m.doc_ids.as_ref().map_or(0, |d| d.iter().map(|s| s.len() + 4).sum());
    let mut w = Writer::new(KIND_GLOBAL_MODEL, enc, cap);
    w.str(&m.federation_id);
    w.u64(m.version);
    w.u8(m.mode.to_byte());
    w.u32(m.tensors.len().min(u32::MAX as usize) as u32);
    for t in &m.tensors {
        w.tensor(t, enc);
    }
    match &m.doc_ids {
        None => w.u8(0),
        Some(ids) => {
            w.u8(1);
            w.u32(ids.len().min(u32::MAX as usize) as u32);
            for id in ids {
                w.str(id);
            }
        }
    }
    w.finish()
}

/// Decodes a global model, verifying framing and checksum.
pub fn decode_global_model(data: &[u8]) -> Result<GlobalModel, ProtocolError> {
    decode_global_model_inner(data, true)
}

/// Like [`decode_global_model`] but skips the checksum (fuzzing only).
#[doc(hidden)]
pub fn decode_global_model_ignoring_checksum(data: &[u8]) -> Result<GlobalModel, ProtocolError> {
    decode_global_model_inner(data, false)
}

fn decode_global_model_inner(data: &[u8], verify_crc: bool) -> Result<GlobalModel, ProtocolError> {
    let (mut r, enc) = open_frame(data, KIND_GLOBAL_MODEL, "global model", verify_crc)?;
    let federation_id = r.string("federation id")?;
    let version = r.u64("version")?;
    let mode_b = r.u8("mode")?;
    let mode = FederationMode::from_byte(mode_b).ok_or(ProtocolError::UnknownMode(mode_b))?;
    let tensors = r.tensors(enc)?;
    let doc_ids = match r.u8("doc id flag")? {
        0 => None,
        _ => {
            let n = r.count("doc id count", 4)?;
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(r.string("doc id")?);
            }
            Some(ids)
        }
    };
    r.finish()?;
    Ok(GlobalModel { federation_id, version, mode, tensors, doc_ids })
}
