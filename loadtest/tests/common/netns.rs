//! Two test hosts in network namespaces of their own, a node and its clients, joined
//! by a veth pair whose UDP nftables thins at random (a link that loses packets) or
//! drops altogether (a network that lets only TCP through), made without touching
//! the machine's own network. Removed on drop. (The browser tests use it too: each
//! test binary takes what it needs.)
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The node's and the clients' addresses on the link.
pub const NODE_IP: &str = "10.201.0.1";
pub const CLIENT_IP: &str = "10.201.0.2";

pub struct LossyLink {
    pub node_ns: String,
    pub client_ns: String,
    /// The node's end of the veth pair (deleted on drop if a failed build left it
    /// in the machine's own namespace).
    veth: String,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn need(tool: &str) {
    let found = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|d| std::path::Path::new(d).join(tool).exists());
    assert!(
        found,
        "`{tool}` is missing: this test builds a lossy link between network namespaces \
         (install iproute2, nftables and ethtool; scripts/test.sh does)"
    );
}

impl LossyLink {
    /// A link on which nftables drops `pct` percent of UDP datagrams in each
    /// direction, each on its own (`numgen random`). Needs root (network namespaces).
    pub fn new(pct: u32) -> LossyLink {
        Self::with_rule(&format!(
            "meta l4proto udp numgen random mod 100 < {pct} counter drop"
        ))
    }

    /// A link that drops every UDP datagram each way: as a network that lets only
    /// TCP through (no media over UDP, no TURN over UDP).
    pub fn without_udp() -> LossyLink {
        Self::with_rule("meta l4proto udp counter drop")
    }

    /// A link on which each side applies the nftables `rule` to what it receives.
    fn with_rule(rule: &str) -> LossyLink {
        for tool in ["ip", "nft", "ethtool"] {
            need(tool);
        }
        // Unique per link, in this process and among concurrent test processes.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id());
        let link = LossyLink {
            node_ns: format!("kn-node-{id}"),
            client_ns: format!("kn-client-{id}"),
            veth: format!("kvn{id}"),
        };
        if let Err(e) = link.build(&id, rule) {
            panic!("cannot build the test link (network namespaces need root, as CI has): {e}");
        }
        link
    }

    fn build(&self, id: &str, rule: &str) -> Result<(), String> {
        let (n, c) = (self.node_ns.as_str(), self.client_ns.as_str());
        let (vn, vc) = (format!("kvn{id}"), format!("kvc{id}"));
        run(&["ip", "netns", "add", n])?;
        run(&["ip", "netns", "add", c])?;
        run(&[
            "ip", "link", "add", &vn, "type", "veth", "peer", "name", &vc,
        ])?;
        for (ns, dev, ip) in [(n, &vn, NODE_IP), (c, &vc, CLIENT_IP)] {
            run(&["ip", "link", "set", dev, "netns", ns])?;
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/30"),
                "dev",
                dev,
            ])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            // Segment GSO sends as they leave, so that the other side's rule sees
            // (and drops) datagrams one by one: netfilter sees a GSO send whole.
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "ethtool",
                "-K",
                dev,
                "tx-udp-segmentation",
                "off",
            ])?;
            // Each side thins what it receives: the node its clients' datagrams, the
            // clients the node's.
            let nft = |cmd: &str| run(&["ip", "netns", "exec", ns, "nft", cmd]);
            nft("add table inet lossy")?;
            nft("add chain inet lossy input { type filter hook input priority 0; }")?;
            nft(&format!("add rule inet lossy input {rule}"))?;
        }
        Ok(())
    }

    /// Datagrams dropped so far on the node's side and the clients' side.
    pub fn dropped(&self) -> (u64, u64) {
        let count = |ns: &str| {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "list", "table", "inet", "lossy"])
                .output()
                .expect("nft runs");
            let text = String::from_utf8_lossy(&out.stdout);
            text.split("counter packets ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (count(&self.node_ns), count(&self.client_ns))
    }

    /// `program args` run in the node's namespace, stdout piped; returns once it
    /// printed a line containing `ready`. The process is killed when dropped.
    pub fn spawn_node(&self, program: &std::path::Path, args: &[&str], ready: &str) -> NodeProcess {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.node_ns])
            .arg(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the node starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let wanted = ready.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(&wanted) {
                    let _ = tx.send(());
                }
            }
        });
        let node = NodeProcess(child);
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            panic!("the node did not say {ready:?} within 20 s");
        }
        node
    }

    /// `program args` in the clients' namespace.
    pub fn client(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client_ns, program])
            .args(args);
        cmd
    }
}

/// A process in the node's namespace, killed when dropped (a failed test included).
pub struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so the pair.
        let _ = run(&["ip", "netns", "del", &self.node_ns]);
        let _ = run(&["ip", "netns", "del", &self.client_ns]);
        let _ = run(&["ip", "link", "del", &self.veth]);
    }
}
