//! `--config FILE`: a TOML file with the flags' keys, a flag or its environment
//! variable winning over it; `--print-config` shows the effective configuration with
//! secrets masked and each value's source; a key that is no flag, or a value of the
//! wrong type, stops the start with exit status 2 and names it.

use std::process::Command;

fn signalling(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_signalling"));
    cmd.args(args).env_remove("KNUDEPUNKT_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("signalling runs")
}

#[test]
fn a_config_file_sets_what_flags_and_environment_do_not() {
    let dir = std::env::temp_dir().join(format!("knudepunkt-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(
        &file,
        "http = \"127.0.0.1:18100\"\nsecret = \"secret-from-the-file-0123456789abcdef\"\n\
         joins_per_second = 50\nrooms-must-exist = true\ntrusted-proxy = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = signalling(
        &[
            "--config",
            path,
            "--http",
            "127.0.0.1:18101",
            "--print-config",
        ],
        &[],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("http = \"127.0.0.1:18101\"  # command line"),
        "{printed}"
    );
    assert!(
        printed.contains("joins-per-second = \"50\"  # file"),
        "{printed}"
    );
    assert!(
        printed.contains("rooms-must-exist = true  # file"),
        "{printed}"
    );
    assert!(
        printed.contains("trusted-proxy = [\"10.0.0.0/8\"]  # file"),
        "{printed}"
    );
    assert!(
        printed.contains("secret = \"********\"  # file"),
        "{printed}"
    );
    assert!(!printed.contains("secret-from-the-file"), "{printed}");
    // The environment wins over the file.
    let out = signalling(
        &[&format!("--config={path}"), "--print-config"],
        &[(
            "KNUDEPUNKT_SECRET",
            "secret-from-the-environment-0123456789",
        )],
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("secret = \"********\"  # environment"),
        "{printed}"
    );
    assert!(
        printed.contains("http = \"127.0.0.1:18100\"  # file"),
        "{printed}"
    );

    // What is not a flag, or not its type: refused, named.
    std::fs::write(&file, "colour = \"red\"\n").unwrap();
    let out = signalling(&["--config", path], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `colour`"));
    std::fs::write(&file, "joins-per-second = \"lots\"\n").unwrap();
    let out = signalling(&["--config", path], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lots"));
    let out = signalling(&["--config", &dir.join("none.toml").to_string_lossy()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
