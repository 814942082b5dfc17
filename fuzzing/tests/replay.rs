//! Every seed and every input that once crashed a target, replayed through it on the
//! stable toolchain: a fixed crash stays fixed without libFuzzer. The inputs live in
//! `seeds/TARGET/` and `regressions/TARGET/`; a target with no seed fails this test.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 10] = [
    ("client_message", fuzzing::client_message),
    ("control_frame", fuzzing::control_frame),
    ("token", fuzzing::token),
    ("forwarded", fuzzing::forwarded),
    ("sdp", fuzzing::sdp),
    ("datagram", fuzzing::datagram),
    ("ice_tcp", fuzzing::ice_tcp),
    ("sip", fuzzing::sip),
    ("leg_rtp", fuzzing::leg_rtp),
    ("config", fuzzing::config),
];

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, Vec<u8>)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| {
            let p = e.path();
            (
                p.display().to_string(),
                std::fs::read(&p).expect("readable"),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_seed_and_regression_runs_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, target) in TARGETS {
        let seeds = inputs(&root.join("seeds").join(name));
        assert!(!seeds.is_empty(), "no seed for target {name}");
        let regressions = inputs(&root.join("regressions").join(name));
        for (path, data) in seeds.iter().chain(&regressions) {
            eprintln!("{name}: {path}");
            target(data);
        }
    }
}
