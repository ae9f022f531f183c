//! The local launcher: a generated deployment on loopback (or in one network
//! namespace per node, see [`crate::netns`]), one `byzscale node` process per
//! replica (free ports, a directory for the files and logs, waiting until
//! every node listens, SIGKILL and restart of a node, killing them when done
//! unless kept). A directory it made itself (no `dir` given) is removed with
//! the processes; commands that stop on SIGINT/SIGTERM drop their [`Local`]
//! so the same happens then.

use crate::generate::{generate, Ports};
use crate::netns::Netns;
use crate::node_file::{NodeFile, NodeProtocol};
use anyhow::{bail, Context, Result};
use byzscale_core::config::Deployment;
use rand::Rng;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A local deployment of node processes. The processes are killed when it is
/// dropped, unless it was started to be kept.
pub struct Local {
    children: Vec<Option<Child>>,
    /// The command prefix of each node (empty: the binary itself).
    prefixes: Vec<Vec<String>>,
    exe: PathBuf,
    keep: bool,
    /// The temporary directory made here when no `dir` was given: removed
    /// on drop (after the processes are killed) unless kept.
    tmp: Option<tempfile::TempDir>,
    pub dep: Deployment,
    pub ports: Ports,
    pub dir: PathBuf,
}

impl Drop for Local {
    fn drop(&mut self) {
        if self.keep {
            if let Some(t) = self.tmp.take() {
                let _ = t.keep();
            }
            return;
        }
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // then the fields drop: `tmp` removes the directory
    }
}

/// `dir`, or a fresh temporary directory named `prefix…` with its guard
/// (dropping the guard removes the directory; `TempDir::keep` keeps it).
pub fn dir_or_temp(
    dir: Option<PathBuf>,
    prefix: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .context("creating a temporary directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    })
}

/// What [`Local::start`] starts.
pub struct LocalSpec<'a> {
    /// `(n, f)` per group; node ids and ports are numbered across groups.
    pub groups: &'a [(usize, usize)],
    pub protocol: NodeProtocol,
    /// Where the files go (default: a temporary directory, removed when the
    /// [`Local`] is dropped unless kept).
    pub dir: Option<PathBuf>,
    /// Leave the processes running when the [`Local`] is dropped.
    pub keep: bool,
    /// Run node i in namespace i of these, on its address, instead of on
    /// 127.0.0.1.
    pub netns: Option<&'a Netns>,
}

impl Local {
    /// Generate a deployment, with `patch` applied to every node file, start
    /// one `node` process of the running binary (`byzscale`) per replica, and
    /// wait until they listen.
    pub async fn start(spec: LocalSpec<'_>, patch: impl Fn(&mut NodeFile)) -> Result<Local> {
        let total: usize = spec.groups.iter().map(|g| g.0).sum();
        if total == 0 {
            bail!("a cluster needs at least one replica");
        }
        let (dir, tmp) = dir_or_temp(spec.dir, "byzscale-cluster-")?;
        let (hosts, prefixes) = match spec.netns {
            Some(ns) => (ns.hosts(), (0..total).map(|i| ns.prefix(i)).collect()),
            None => (vec!["127.0.0.1".into()], vec![Vec::new(); total]),
        };
        let ports = Ports {
            hosts,
            base: free_base_port(total)?,
        };
        let dep = generate(&dir, spec.groups, &ports, spec.protocol, patch)?;
        let exe = std::env::current_exe().context("locating the byzscale binary")?;
        // kept alive only once every node listens: a failed start cleans up
        let mut local = Local {
            children: Vec::new(),
            prefixes,
            exe,
            keep: false,
            tmp,
            dep,
            ports,
            dir,
        };
        for i in 0..total {
            local.children.push(None);
            local.restart(i)?;
        }
        local.wait_for(Ports::replica).await?;
        local.keep = spec.keep;
        Ok(local)
    }

    /// Wait until every node listens on the address `addr` gives for it.
    pub async fn wait_for(&self, addr: impl Fn(&Ports, usize) -> String) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0..self.len() {
            wait_listening(&addr(&self.ports, i), deadline)
                .await
                .with_context(|| {
                    format!(
                        "node {i} did not start; see {}",
                        self.dir.join(format!("node-{i}.log")).display()
                    )
                })?;
        }
        Ok(())
    }

    /// The files' directory as reports show it: said to be removed at exit
    /// when it will be.
    pub fn dir_label(&self) -> String {
        if self.tmp.is_some() && !self.keep {
            format!(
                "{} (removed at exit; --dir or --keep keeps it)",
                self.dir.display()
            )
        } else {
            self.dir.display().to_string()
        }
    }

    /// How many node processes the deployment has.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Whether node `i`'s process is still ours (not killed).
    pub fn is_running(&self, i: usize) -> bool {
        self.children.get(i).is_some_and(Option::is_some)
    }

    /// The process id of node `i`, if it is still ours.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children.get(i)?.as_ref().map(Child::id)
    }

    /// SIGKILL node `i`'s process.
    pub fn kill(&mut self, i: usize) {
        self.kill_all(&[i]);
    }

    /// SIGKILL the processes of `nodes` at once (every signal is sent
    /// before the first is reaped), as in a power loss.
    pub fn kill_all(&mut self, nodes: &[usize]) {
        let mut killed: Vec<Child> = Vec::new();
        for &i in nodes {
            if let Some(mut c) = self.children.get_mut(i).and_then(Option::take) {
                let _ = c.kill();
                killed.push(c);
            }
        }
        for mut c in killed {
            let _ = c.wait();
        }
    }

    /// Start node `i` again from its node file (its log is appended to);
    /// a no-op if it runs.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        if self.is_running(i) {
            return Ok(());
        }
        let child = spawn_node(&self.exe, &self.prefixes[i], &self.dir, i)?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// The endpoints of a cluster left running: `extra` (an object of the
    /// protocol's addresses) plus every node's metrics URL, the deployment
    /// file, the process ids and the command that stops them.
    pub fn endpoints(&self, extra: serde_json::Value) -> serde_json::Value {
        let pids: Vec<u32> = self.children.iter().flatten().map(|c| c.id()).collect();
        let n = self.len();
        let mut v = serde_json::json!({
            "metrics": (0..n).map(|i| format!("http://{}/metrics", self.ports.metrics(i))).collect::<Vec<_>>(),
            "deployment": self.dir.join("deployment.toml").display().to_string(),
            "stop": format!("kill {}", pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")),
            "pids": pids,
        });
        if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    }
}

fn spawn_node(exe: &Path, prefix: &[String], dir: &Path, i: usize) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("node-{i}.log")))?;
    let mut cmd = match prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.arg("node")
        .arg("--config")
        .arg(dir.join(format!("node-{i}.toml")))
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting replica {i}"))
}

/// A base port whose four blocks of `n` ports (replicas, metrics, Redis, HTTP)
/// are free now. Bases are drawn below Linux's ephemeral range (32768 and up by
/// default), where outgoing connections take their local ports: a port free
/// when checked there could be taken by a client's connection before the node
/// binds it.
fn free_base_port(n: usize) -> Result<u16> {
    if n > 100 {
        bail!("at most 100 processes per local cluster ({n} asked)");
    }
    let mut rng = rand::thread_rng();
    'outer: for _ in 0..200 {
        let base: u16 = rng.gen_range(10_000..32_000);
        for off in [0usize, 100, 200, 300] {
            for i in 0..n {
                if std::net::TcpListener::bind(("127.0.0.1", base + (off + i) as u16)).is_err() {
                    continue 'outer;
                }
            }
        }
        return Ok(base);
    }
    bail!("could not find free ports on 127.0.0.1")
}

/// Wait until something accepts connections on `addr`, or fail at `deadline`.
pub async fn wait_listening(addr: &str, deadline: Instant) -> Result<()> {
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} did not come up in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the unlabelled metric `name` served at `addr` (`host:port`).
pub async fn scrape_metric(addr: &str, name: &str) -> Option<f64> {
    let body = scrape_metrics(addr).await?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
}

/// The Prometheus text served at `addr` (`host:port`).
pub async fn scrape_metrics(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(body)
}
