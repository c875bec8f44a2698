//! Writes the seed inputs of the `attest_evidence` fuzz target into `fuzz/seeds/attest_evidence/`: the Milan test
//! report raw and as evidence JSON in both shapes, and virtual evidence for the target's presented key, so the
//! fuzzer starts past JSON and base64 and reaches the certificate, signature and binding checks.
//!
//! Run: `cargo run -p consort-attest --example fuzz_seeds`. `tests/fuzz_replay.rs` checks the seeds in every test run.

use std::path::Path;

use consort_attest::{Evidence, NodeQuote, Platform, PlatformKind, VirtualPlatform};

/// The key the fuzz target presents (keep in step with `fuzz/fuzz_targets/attest_evidence.rs`).
const PRESENTED_KEY: &[u8] = b"fuzz presented key";

fn main() -> std::io::Result<()> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = crate_dir.join("../../fuzz/seeds/attest_evidence");
    std::fs::create_dir_all(&out)?;
    let report = std::fs::read_to_string(crate_dir.join("tests/data/report_milan.hex"))?;
    let report = hex::decode(report.trim()).map_err(std::io::Error::other)?;
    let vcek = std::fs::read(crate_dir.join("tests/data/vcek_milan.der"))?;
    let snp = Evidence {
        format: PlatformKind::Snp,
        quote: report.clone(),
        endorsements: vcek,
    };
    let virtual_evidence = VirtualPlatform::new(consort_crypto::sha256(b"fuzz"))
        .evidence_for(PRESENTED_KEY)
        .map_err(std::io::Error::other)?;
    let node_quote = serde_json::to_vec(&NodeQuote::new("fuzz", &snp, None)).map_err(std::io::Error::other)?;

    std::fs::write(out.join("snp_report.bin"), &report)?;
    std::fs::write(out.join("snp_evidence.json"), snp.to_json())?;
    std::fs::write(out.join("snp_node_quote.json"), node_quote)?;
    std::fs::write(out.join("virtual_quote.json"), &virtual_evidence.quote)?;
    std::fs::write(out.join("virtual_evidence.json"), virtual_evidence.to_json())?;
    println!("wrote seeds to {}", out.display());
    Ok(())
}
