//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and keeps the encoded
//! descriptor set of the API this service serves (`task.proto`) in `OUT_DIR/descriptor.bin`
//! for gRPC reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &["proto/task.proto", "proto/processor.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // Reflection describes what this server serves: task.proto, not the Processor's API it calls.
    let mut served = descriptors.clone();
    served.file.retain(|file| file.name() == "task.proto");
    fs::write(out_dir.join("descriptor.bin"), served.encode_to_vec())?;
    // The served API decodes with our codec (undecodable input is INVALID_ARGUMENT); the
    // Processor's client keeps prost's.
    let mut processor = descriptors;
    processor.file.retain(|file| file.name() != "task.proto");
    tonic_prost_build::configure()
        .codec_path("crate::codec::TaskCodec")
        .compile_fds(served)?;
    tonic_prost_build::configure().compile_fds(processor)?;
    Ok(())
}
