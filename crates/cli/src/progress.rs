//! Progress bars for long work (embedding, training), drawn on stderr with indicatif.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` items with a label, elapsed time and rate.
pub fn bar(len: usize, label: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {per_sec}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(label.to_string());
    pb
}
