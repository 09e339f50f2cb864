//! Fuzz target: the binary decoders must never panic or over-allocate on
//! arbitrary input, and anything that decodes must re-encode losslessly.
#![no_main]

use fedsearch_protocol::{
    Encoding, OptimizerState, StreamingFedAvg, decode_global_model,
    decode_global_model_ignoring_checksum, decode_update, decode_update_ignoring_checksum,
    encode_global_model, encode_update,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_update(data);
    let _ = decode_global_model(data);
    let _ = StreamingFedAvg::from_bytes(data);
    let _ = OptimizerState::from_bytes(data);
    // Skip the checksum so the fuzzer explores the body parser too.
    if let Ok(u) = decode_update_ignoring_checksum(data) {
        let again =
            decode_update(&encode_update(&u, Encoding::F32)).expect("re-encoded update decodes");
        assert_eq!(again.tensors.len(), u.tensors.len());
    }
    if let Ok(m) = decode_global_model_ignoring_checksum(data) {
        let again = decode_global_model(&encode_global_model(&m, Encoding::F32))
            .expect("re-encoded model decodes");
        assert_eq!(again.tensors.len(), m.tensors.len());
    }
});
