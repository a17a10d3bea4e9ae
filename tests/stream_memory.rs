//! The on-the-fly stream holds one batch, whatever N (its own test binary, so no other test
//! shares the process whose memory it measures).

mod common;

use common::cex_a;
use xrai_bench::data::{ImageSimulator, ImageStream, Rescale, SimulationConfig, Split};

fn simulator(poisson: bool, seed: u64) -> ImageSimulator {
    let config = SimulationConfig {
        rescale: Rescale::MeanTotal(1000.0),
        poisson,
        seed,
        ..Default::default()
    };
    ImageSimulator::new(cex_a(), config).unwrap()
}

/// Resident memory of this process in bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn a_five_million_image_stream_runs_in_constant_memory() {
    let sim = simulator(false, 3);
    let mut stream = ImageStream::new(&sim, Split::Train, 5_000_000, 256).starting_at(4_990_000);
    let mut batch = xrai_bench::data::Batch::empty();
    stream.next_into(&mut batch);
    let before = rss_bytes();
    let mut seen = batch.len();
    for _ in 0..30 {
        assert!(stream.next_into(&mut batch));
        seen += batch.len();
    }
    assert_eq!(batch.start, 4_990_000 + 30 * 256);
    if let (Some(a), Some(b)) = (before, rss_bytes()) {
        // 31 batches = 130 MB of images went through; memory holds one batch (17 MB).
        assert!(
            b < a + 20_000_000,
            "memory grew from {a} to {b} bytes over {seen} images"
        );
    }
}
