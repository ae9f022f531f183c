//! Issue 10, "Durability as the core states it", end to end with real
//! processes on loopback: a 4-replica cluster under write load through its
//! Redis gateways, SIGKILL of all four replicas at once, a restart of each from
//! its node file; every acknowledged write must be readable, the group must
//! serve again, and after that a leader crash must still end in a view change.
//! Waits are bounded polls for progress, never timing assertions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::{metric, Node, Writers};

/// One RESP connection to a Redis gateway.
struct Resp {
    r: BufReader<TcpStream>,
}

impl Resp {
    fn connect(addr: &str) -> Option<Resp> {
        let s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.set_nodelay(true).ok()?;
        Some(Resp {
            r: BufReader::new(s),
        })
    }

    /// Send a command, read one reply: `+...`/`-...`/`:...` lines, or a bulk
    /// string's content (`None` for a nil). An I/O error is `Err`.
    fn call(&mut self, args: &[&str]) -> std::io::Result<Option<String>> {
        let mut cmd = format!("*{}\r\n", args.len());
        for a in args {
            cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.r.get_mut().write_all(cmd.as_bytes())?;
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end().to_string();
        match line.strip_prefix('$') {
            Some("-1") => Ok(None),
            Some(n) => {
                let n: usize = n.parse().map_err(|_| std::io::ErrorKind::InvalidData)?;
                let mut body = vec![0u8; n + 2];
                self.r.read_exact(&mut body)?;
                body.truncate(n);
                Ok(Some(String::from_utf8_lossy(&body).into_owned()))
            }
            None => Ok(Some(line)),
        }
    }
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(60), Duration::from_millis(100), f)
}

/// SET `key` through the gateway at `addr`; true on +OK.
fn set_ok(addr: &str, key: &str, value: &str) -> bool {
    Resp::connect(addr)
        .and_then(|mut c| c.call(&["SET", key, value]).ok())
        .is_some_and(|r| r.as_deref() == Some("+OK"))
}

#[test]
fn a_whole_group_sigkill_loses_no_acknowledged_write_and_a_leader_crash_after_it_completes() {
    let (dir, base) = common::local_config("byzscale-e2e-wgc", 12_000, 18_000);
    let metrics = |i: usize| format!("127.0.0.1:{}", base as usize + 100 + i);
    let redis = move |i: usize| format!("127.0.0.1:{}", base as usize + 200 + i);
    let mut nodes: Vec<Node> = (0..4).map(|i| Node::start(&dir, i)).collect();
    wait_until("the group to serve", || set_ok(&redis(1), "probe", "0"));

    // 16 writers through the four gateways, each acknowledging its own keys
    let writers = Writers::<Vec<(String, String)>>::spawn(16, move |w, acked, stop| {
        let Some(mut c) = Resp::connect(&redis(w % 4)) else {
            return;
        };
        for k in 0.. {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let (key, value) = (format!("w{w}:{k}"), format!("v{w}.{k}"));
            match c.call(&["SET", &key, &value]) {
                Ok(Some(r)) if r == "+OK" => acked.lock().unwrap().push((key, value)),
                _ => return, // the gateway died with the replicas
            }
        }
    });
    wait_until("writes under load", || writers.acked().len() >= 2_000);

    // power loss: SIGKILL every replica at once, then restart each from its
    // node file (its redb store)
    for n in nodes.iter_mut() {
        n.signal_kill();
    }
    for n in nodes.iter_mut() {
        n.kill();
    }
    let acked = writers.stop();
    let nodes_after: Vec<Node> = (0..4).map(|i| Node::start(&dir, i)).collect();
    drop(std::mem::replace(&mut nodes, nodes_after));
    wait_until("the group to serve again", || {
        set_ok(&redis(2), "after", "1")
    });

    // every acknowledged write is there (the gateway's reads need a full
    // quorum of matching replies, else they are ordered)
    let mut c = Resp::connect(&redis(3)).unwrap();
    for (key, value) in &acked {
        let got = c.call(&["GET", key]).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value.as_str()),
            "acknowledged {key} lost"
        );
    }

    // a leader crash after the restart still ends in a view change
    let view = metric(&metrics(1), "byzscale_view").unwrap() as usize;
    let leader = view % 4;
    nodes[leader].kill();
    let other = (leader + 1) % 4;
    wait_until("the group to serve without its leader", || {
        set_ok(&redis(other), "after-leader-crash", "2")
    });
    let others: Vec<usize> = (0..4).filter(|i| *i != leader).collect();
    wait_until("the others to install a new view", || {
        others
            .iter()
            .all(|i| metric(&metrics(*i), "byzscale_view").is_some_and(|v| v as usize > view))
    });
    let mut c = Resp::connect(&redis(other)).unwrap();
    for (key, value) in acked.iter().step_by(97) {
        let got = c.call(&["GET", key]).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value.as_str()),
            "{key} after the view change"
        );
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
