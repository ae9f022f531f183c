//! Real network partitions for local clusters: one Linux network namespace
//! per node, joined by veth pairs to a bridge in a hub namespace.
//!
//! ```text
//!   root ns (the driver, its clients)        hub ns                 node ns i
//!   <tag>-r  10.a.b.254  ──veth──  r ─┐
//!                                     ├── br0 (connected side)
//!                                  v<i> ─┘   br1 (cut-off side)  ──veth──  eth0 10.a.b.(i+1)
//! ```
//!
//! A partition moves the hub ends of a set of nodes from `br0` to `br1`: the
//! nodes of the set still reach each other, but no packet passes between
//! them and the rest or the driver (TCP connections stall and time out, as
//! on a cut cable); [`Netns::heal`] moves them back. Nothing is filtered in
//! userspace: the kernel drops the frames, so the nodes' transport cannot
//! tell it from a real partition.
//!
//! Why this mechanism: the machines this runs on have no iptables and no
//! netem, but namespaces, veth pairs and bridges are in every Linux kernel
//! and need only `ip` (iproute2) and root. [`Netns::create`] fails with the
//! reason when they are not available (no root, no `ip`, a container without
//! `CAP_SYS_ADMIN`), so a caller can say why it runs without partitions.
//!
//! The namespaces and links are deleted when the [`Netns`] is dropped; a
//! driver killed with SIGKILL leaves them behind (`ip netns list`, names
//! `byzscale-<tag>-*`; `ip netns del NAME` removes one).

use anyhow::{bail, Context, Result};
use rand::Rng;
use std::process::Command;

/// The namespaces, bridges and addresses of one local deployment.
pub struct Netns {
    tag: String,
    nodes: usize,
    subnet: String,
    cut: Vec<bool>,
}

/// Run `ip` with `args`; its stderr on failure.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// One namespace per node (`nodes` of them), a hub with both bridges,
    /// and the driver's link into `br0`, on a random /24 of 10.0.0.0/8.
    pub fn create(nodes: usize) -> Result<Netns> {
        if nodes == 0 || nodes > 250 {
            bail!("{nodes} nodes do not fit one /24");
        }
        let r: u16 = rand::thread_rng().gen();
        let mut ns = Netns {
            tag: format!("{r:04x}"),
            nodes: 0,
            subnet: format!("10.{}.{}", 100 + (r >> 8) % 100, r & 0xff),
            cut: vec![false; nodes],
        };
        // on error the Drop removes what was made
        ns.build_hub()?;
        for i in 0..nodes {
            ns.nodes = i + 1;
            ns.build_node(i)?;
        }
        Ok(ns)
    }

    fn hub(&self) -> String {
        format!("byzscale-{}-hub", self.tag)
    }

    /// The namespace of node `i`.
    pub fn name(&self, i: usize) -> String {
        format!("byzscale-{}-{i}", self.tag)
    }

    fn root_link(&self) -> String {
        format!("bzs{}r", self.tag)
    }

    fn build_hub(&mut self) -> Result<()> {
        let hub = self.hub();
        ip(&["netns", "add", &hub])?;
        for br in ["br0", "br1"] {
            ip(&["-n", &hub, "link", "add", br, "type", "bridge"])?;
            ip(&["-n", &hub, "link", "set", br, "up"])?;
        }
        let root = self.root_link();
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "r", "netns", &hub,
        ])?;
        ip(&["-n", &hub, "link", "set", "r", "master", "br0", "up"])?;
        let addr = format!("{}.254/24", self.subnet);
        ip(&["addr", "add", &addr, "dev", &root])?;
        ip(&["link", "set", &root, "up"])
    }

    fn build_node(&self, i: usize) -> Result<()> {
        let (hub, name, v) = (self.hub(), self.name(i), format!("v{i}"));
        ip(&["netns", "add", &name])?;
        ip(&[
            "-n", &name, "link", "add", "eth0", "type", "veth", "peer", "name", &v, "netns", &hub,
        ])?;
        ip(&["-n", &hub, "link", "set", &v, "master", "br0", "up"])?;
        let addr = format!("{}/24", self.host(i));
        ip(&["-n", &name, "addr", "add", &addr, "dev", "eth0"])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])
    }

    /// Node `i`'s address.
    pub fn host(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// Every node's address, in node order.
    pub fn hosts(&self) -> Vec<String> {
        (0..self.cut.len()).map(|i| self.host(i)).collect()
    }

    /// The command prefix that runs a program in node `i`'s namespace
    /// (`ip netns exec` execs in place: the process id is the program's).
    pub fn prefix(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec"]
            .into_iter()
            .map(String::from)
            .chain([self.name(i)])
            .collect()
    }

    /// Cut the nodes in `side` off from the others and from the driver
    /// (they still reach each other); heals any earlier partition first.
    pub fn partition(&mut self, side: &[usize]) -> Result<()> {
        self.heal()?;
        for &i in side {
            self.attach(i, "br1")?;
            self.cut[i] = true;
        }
        Ok(())
    }

    /// Join every node to the connected side again.
    pub fn heal(&mut self) -> Result<()> {
        for i in 0..self.cut.len() {
            if self.cut[i] {
                self.attach(i, "br0")?;
                self.cut[i] = false;
            }
        }
        Ok(())
    }

    fn attach(&self, i: usize, bridge: &str) -> Result<()> {
        let v = format!("v{i}");
        ip(&["-n", &self.hub(), "link", "set", &v, "master", bridge])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // deleting a namespace deletes its ends of the veth pairs, and so
        // the pairs
        let _ = ip(&["link", "del", &self.root_link()]);
        for i in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.name(i)]);
        }
        let _ = ip(&["netns", "del", &self.hub()]);
    }
}
