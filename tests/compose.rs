//! The compose files are accepted by Compose (`docker-compose config`), as written, with the
//! Sentinel variant, and with the local-images override.

use std::process::Command;

fn compose_config(files: &[&str]) {
    let mut command = Command::new("docker-compose");
    for file in files {
        command.arg("-f").arg(file);
    }
    let output = command
        .args(["config", "--quiet"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("docker-compose runs (install Debian's docker-compose)");
    assert!(
        output.status.success(),
        "docker-compose rejected {files:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn compose_accepts_the_stack() {
    compose_config(&["docker-compose.yml"]);
}

#[test]
fn compose_accepts_the_sentinel_stack() {
    compose_config(&["docker-compose.yml", "docker-compose.ha.yml"]);
    compose_config(&[
        "docker-compose.yml",
        "docker-compose.ha.yml",
        "docker-compose.local.yml",
    ]);
}

#[test]
fn compose_accepts_the_local_images_override() {
    compose_config(&["docker-compose.yml", "docker-compose.local.yml"]);
}
