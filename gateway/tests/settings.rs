//! The gateway reads a config file like the other binaries (`settings`): keys are its
//! flags' names, the command line wins, secrets are masked when printed.

use std::process::Command;

#[test]
fn the_gateway_takes_a_config_file() {
    let dir = std::env::temp_dir().join(format!("knudepunkt-gw-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        "signalling = \"http://10.0.0.2:8080\"\nsip = \"10.0.0.3:5060\"\n\
         service-token = \"a-token-to-keep-out-of-sight\"\nsip-trust = [\"10.1.0.0/16\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--config", file.to_str().unwrap(), "--sip", "10.0.0.4:5060"])
        .arg("--print-config")
        .env_remove("KNUDEPUNKT_SERVICE_TOKEN")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("signalling = \"http://10.0.0.2:8080\"  # file"),
        "{printed}"
    );
    assert!(
        printed.contains("sip = \"10.0.0.4:5060\"  # command line"),
        "{printed}"
    );
    assert!(
        printed.contains("sip-trust = [\"10.1.0.0/16\"]  # file"),
        "{printed}"
    );
    assert!(
        printed.contains("service-token = \"********\"  # file"),
        "{printed}"
    );
    assert!(!printed.contains("keep-out-of-sight"), "{printed}");
    std::fs::write(&file, "colour = \"red\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `colour`"));
    let _ = std::fs::remove_dir_all(&dir);
}
