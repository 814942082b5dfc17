//! `--config FILE`: a TOML file with the flags' keys, a flag or its environment
//! variable winning over it; `--print-config` shows the effective configuration with
//! secrets masked and each value's source; a key that is no flag, or a value of the
//! wrong type, stops the start with exit status 2 and names it.

use std::process::Command;

fn signalling(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_signalling"));
    cmd.args(args)
        .env_remove("KNUDEPUNKT_SECRET")
        .env_remove("KNUDEPUNKT_TOKEN_PUBLIC_KEY");
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

/// `signalling keypair` makes an Ed25519 pair (the private key its owner's alone, no
/// file written over); `signalling token --token-private-key` mints EdDSA tokens that
/// the public key verifies; a node refuses the private key in place of the public one,
/// a file it cannot read, and a token secret beside a public key.
#[test]
fn keypair_and_token_commands_make_eddsa_tokens() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("knudepunkt-keypair-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (private, public) = (dir.join("token.key"), dir.join("token.pub"));
    let (k, p) = (private.to_str().unwrap(), public.to_str().unwrap());
    let out = signalling(&["keypair", "--private-key", k, "--public-key", p], &[]);
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is its owner's alone");
    let again = signalling(&["keypair", "--private-key", k, "--public-key", p], &[]);
    assert_eq!(again.status.code(), Some(2), "no key is written over");
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    let out = signalling(
        &[
            "token",
            "--token-private-key",
            k,
            "--room",
            "ward",
            "--identity",
            "dr",
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let pem = std::fs::read(&public).unwrap();
    let node = signalling::token::Keys::from_public_key(&pem, None).unwrap();
    let claims = node
        .verify(Some(token.trim()), "ward")
        .expect("the node takes it");
    assert_eq!(claims.sub, "dr");
    // Minting needs a key.
    let out = signalling(&["token", "--room", "ward", "--identity", "dr"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("minting tokens needs --secret"), "{err}");
    // The public key's path is no secret: --print-config shows it.
    let out = signalling(&["--token-public-key", p, "--print-config"], &[]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(p), "{printed}");

    let start = |key: &str, extra: &[&str]| {
        let mut args = vec!["--http", "127.0.0.1:0", "--token-public-key", key];
        args.extend_from_slice(extra);
        let out = signalling(&args, &[]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = start(k, &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("this is a private key"), "{err}");
    let (code, err) = start(dir.join("none").to_str().unwrap(), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--token-public-key"), "{err}");
    let secret = "a5f2c8e1b9d04f7a8c3e6b1d2f9a0c7e5b8d1f4a7c0e3b6d9f2a5c8e1b4d7f0a";
    let (code, err) = start(p, &["--secret", secret]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `signalling records`: usage statistics from a records directory, per day or per
/// organisation, as a table, CSV or JSON; a bad day is refused with exit status 2.
#[test]
fn records_print_usage_per_day_and_org() {
    let dir = std::env::temp_dir().join(format!("knudepunkt-usage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let line = |start: &str, end: &str, org: &str, people: u32| {
        format!(
            "{{\"room_id\":\"r0123456789ab\",\"org\":\"{org}\",\"started_at\":\"{start}\",\
             \"ended_at\":\"{end}\",\"duration_s\":600.0,\"participants\":{people},\
             \"participants_peak\":{people},\"participant_minutes\":20.0,\
             \"by_kind\":{{\"browser\":{people},\"whip_whep\":0,\"sip\":0}},\
             \"nodes\":[\"embedded\"],\"ended\":\"empty\"}}\n"
        )
    };
    let day1 = line(
        "2026-12-01T09:00:00Z",
        "2026-12-01T09:10:00Z",
        "region-h",
        2,
    ) + &line("2026-12-01T09:05:00Z", "2026-12-01T09:15:00Z", "kommune", 3);
    std::fs::write(dir.join("meetings-2026-12-01.jsonl"), day1).unwrap();
    let day2 = line(
        "2026-12-02T10:00:00Z",
        "2026-12-02T10:10:00Z",
        "region-h",
        2,
    );
    std::fs::write(dir.join("meetings-2026-12-02.jsonl"), day2).unwrap();
    let d = dir.to_str().unwrap();

    let out = signalling(&["records", "--dir", d], &[]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("day") && lines[0].contains("participant_minutes"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("2026-12-01") && lines[1].contains("  2  "),
        "{table}"
    );
    assert!(lines.last().unwrap().starts_with("total"), "{table}");

    let out = signalling(
        &["records", "--dir", d, "--by", "org", "--format", "csv"],
        &[],
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.contains("\nkommune,1,3,20.0,1,3,0,0,0\n"), "{csv}");
    assert!(csv.contains("\nregion-h,2,4,40.0,1,4,0,0,0\n"), "{csv}");

    let out = signalling(
        &[
            "records",
            "--dir",
            d,
            "--from",
            "2026-12-02",
            "--format",
            "json",
        ],
        &[],
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["key"], "2026-12-02");
    assert_eq!(rows[0]["meetings"], 1);

    let out = signalling(&["records", "--dir", d, "--from", "1 December"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
