//! The media node reads a config file like the other binaries (`settings`).

use std::process::Command;

#[test]
fn the_media_node_takes_a_config_file() {
    let dir = std::env::temp_dir().join(format!("knudepunkt-sfu-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sfu.toml");
    std::fs::write(
        &file,
        "shards = 3\nnode-secret = \"a-secret-to-keep-out-of-sight\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["--config", file.to_str().unwrap(), "--print-config"])
        .env_remove("KNUDEPUNKT_NODE_SECRET")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("shards = \"3\"  # file"), "{printed}");
    assert!(!printed.contains("keep-out-of-sight"), "{printed}");
    let _ = std::fs::remove_dir_all(&dir);
}
