//! The AT2 side of a chaos run: transfers through the nodes' HTTP API, and
//! the ledger check at the end.
//!
//! The load is shaped so that the ledgers can be checked exactly although
//! some transfers end without an answer (the node that took them was killed
//! or cut off while they were in flight: each may or may not have been
//! applied). Writer a owns demo account a (its key) and only ever pays
//! account a+1 mod A (A writers), always the amount a+1, through node a mod
//! N, moving to the next node when one does not answer. It numbers its
//! transfers 1, 2, … and resubmits a transfer that got no answer as it is
//! (the same signed bytes) until it is acknowledged or refused as already
//! applied, so each number names one transfer. Every node applies an
//! account's transfers in order, so a node's ledger is fixed by how many
//! transfers of each account it applied, S_a. From an account's balance B_a
//! and history count T_a (transfers touching it):
//!
//! ```text
//!   B_a = initial − (a+1)·S_a + a·S_{a−1}        T_a = S_a + S_{a−1}
//! ```
//!
//! (with a·S_{a−1} read as (a−1 mod N)+1 times S_{a−1}). The check solves
//! this for S_a, and requires: whole, non-negative solutions; S_{a−1} from
//! account a equal to S_{a−1} from account a−1 (every transfer applied on
//! both sides); S_a equal to the sequence number of the account's newest
//! transfer in its history; every acknowledged transfer's sequence number at
//! most S_a, no two acknowledged with the same number, and at least as many
//! applied as acknowledged (each applied); S_a at most the transfers sent
//! (applied at most once, nothing invented); no negative balance; the supply conserved; and every
//! node reporting the same (balance, count, sequence number) for every
//! account.

use super::writers::Crew;
use crate::protocols::at2::transfer_body;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use byzscale_at2::{demo_key, Account, SignedTransfer, Transfer};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How an HTTP request failed.
enum HttpError {
    /// No connection: nothing was sent.
    Connect,
    /// Sent (or maybe sent), no usable answer.
    Answer(anyhow::Error),
}

/// One HTTP/1.1 request with a JSON body to `addr` (`host:port`): the
/// status and the JSON answer. Connecting may take 1 s, answering `timeout`.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<(u16, serde_json::Value), HttpError> {
    let stream =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await;
    let Ok(Ok(stream)) = stream else {
        return Err(HttpError::Connect);
    };
    let exchange = async {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v = serde_json::from_slice(&bytes)
            .with_context(|| format!("{status}: {}", String::from_utf8_lossy(&bytes)))?;
        anyhow::Ok((status, v))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(HttpError::Answer(e)),
        Err(_) => Err(HttpError::Answer(anyhow!(
            "no answer within {} s",
            timeout.as_secs()
        ))),
    }
}

/// The amount account `a` always pays.
fn amount(a: usize) -> u64 {
    a as u64 + 1
}

/// Demo account `a`'s public key, as the HTTP API names it.
fn account(a: usize) -> String {
    Account::of(&demo_key(a as u32)).hex()
}

/// One writer's account: its next sequence number and the transfer sent
/// without an answer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Writer {
    next: u64,
    pending: Option<SignedTransfer>,
}

/// What the transfer writers (and probes) did, per account.
#[derive(Clone, Debug, Default)]
pub(crate) struct Issued {
    /// Sequence numbers of acknowledged transfers.
    pub acked: BTreeMap<usize, Vec<u64>>,
    /// Transfers sent and never answered (each may or may not have been
    /// applied): at most one per account, its last.
    pub unacked: BTreeMap<usize, u64>,
    /// The accounts' writers.
    writers: BTreeMap<usize, Writer>,
    /// How many accounts the writers own.
    pub accounts: usize,
}

impl Issued {
    fn merge(&mut self, o: Issued) {
        for (a, s) in o.acked {
            self.acked.entry(a).or_default().extend(s);
        }
        for (a, n) in o.unacked {
            *self.unacked.entry(a).or_default() += n;
        }
        self.writers.extend(o.writers);
        self.accounts = self.accounts.max(o.accounts);
    }

    pub fn acked_count(&self) -> usize {
        self.acked.values().map(Vec::len).sum()
    }

    pub fn unacked_count(&self) -> u64 {
        self.unacked.values().sum()
    }

    /// Send account `a`'s next transfer (or resubmit the unanswered one)
    /// through the node at `addr`: whether it was acknowledged (connection
    /// refused counts as not sent).
    async fn transfer(&mut self, addr: &str, a: usize) -> bool {
        let accounts = self.accounts.max(1);
        let w = self.writers.entry(a).or_insert(Writer {
            next: 1,
            pending: None,
        });
        let st = w.pending.get_or_insert_with(|| {
            let key = demo_key(a as u32);
            let t = Transfer {
                from: Account::of(&key),
                seq: w.next,
                to: Account::of(&demo_key(((a + 1) % accounts) as u32)),
                amount: amount(a),
            };
            SignedTransfer::sign(&key, t, vec![])
        });
        let seq = st.transfer.seq;
        let body = transfer_body(st).to_string();
        let r = http(
            addr,
            "POST",
            "/transfer",
            Some(body),
            Duration::from_secs(10),
        )
        .await;
        let done = match r {
            Ok((200, v)) => v["seq"].as_u64() == Some(seq),
            // applied before, its answer lost: acknowledged now
            Ok((409, v)) => v["error"].as_str().is_some_and(|e| e.contains("used up")),
            Err(HttpError::Connect) => return false,
            Ok(_) | Err(HttpError::Answer(_)) => false,
        };
        if done {
            w.pending = None;
            w.next = seq + 1;
            self.acked.entry(a).or_default().push(seq);
            self.unacked.remove(&a);
        } else {
            self.unacked.insert(a, 1);
        }
        done
    }
}

/// The running transfer writers.
pub(crate) struct Transfers(Crew<Issued>);

impl Transfers {
    /// Start `n` closed-loop writers; writer w owns demo account w and pays
    /// through the API at `http[w mod N]`, moving on to the next node when
    /// one does not answer.
    pub fn start(n: usize, http: Vec<String>) -> Transfers {
        Transfers(Crew::start(n, move |w, stop| {
            let http = http.clone();
            async move {
                let mut issued = Issued {
                    accounts: n,
                    ..Issued::default()
                };
                let mut node = w % http.len();
                while !stop.load(Ordering::Relaxed) {
                    if !issued.transfer(&http[node], w).await {
                        node = (node + 1) % http.len();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                issued
            }
        }))
    }

    /// Stop the writers and collect what they did.
    pub async fn finish(self) -> Issued {
        self.0.finish(Issued::default(), Issued::merge).await
    }
}

/// Wait until every node acknowledges a transfer (of account i mod A for
/// node i, each counted in `issued`), at most `within`.
pub(crate) async fn serve_within(
    http: &[String],
    issued: &mut Issued,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    for (i, addr) in http.iter().enumerate() {
        let a = i % issued.accounts.max(1);
        while !issued.transfer(addr, a).await {
            if Instant::now() > deadline {
                bail!(
                    "node {i} acknowledged no transfer within {} s",
                    within.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// What one node reports for one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AccountView {
    pub balance: i64,
    /// Applied transfers touching the account.
    pub total: u64,
    /// The sequence number of the account's newest applied transfer among
    /// the newest ones its history lists (`None`: none listed).
    pub seq: Option<u64>,
}

/// Every account as node `addr` reports it.
async fn ledger(addr: &str, accounts: usize) -> Result<Vec<AccountView>> {
    let get = |path: String| async move {
        match http(addr, "GET", &path, None, Duration::from_secs(5)).await {
            Ok((200, v)) => Ok(v),
            Ok((s, v)) => bail!("GET {path} at {addr}: {s} {v}"),
            Err(HttpError::Connect) => bail!("GET {path}: cannot connect to {addr}"),
            Err(HttpError::Answer(e)) => bail!("GET {path} at {addr}: {e:#}"),
        }
    };
    let mut out = Vec::new();
    for a in 0..accounts {
        let b = get(format!("/balance/{}", account(a))).await?;
        let h = get(format!("/history/{}", account(a))).await?;
        let bad = || anyhow!("account {a} at {addr}: {b} / {h}");
        let seq = h["transfers"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .filter(|t| t["from"].as_str() == Some(account(a).as_str()))
            .filter_map(|t| t["seq"].as_u64())
            .max();
        out.push(AccountView {
            balance: b["balance"].as_i64().ok_or_else(bad)?,
            total: h["total"].as_u64().ok_or_else(bad)?,
            seq,
        });
    }
    Ok(out)
}

/// Poll every node's ledger until all report the same, twice in a row, at
/// most `within`: the ledgers (per node) and the seconds it took, if they
/// converged.
pub(crate) async fn converge(
    http: &[String],
    accounts: usize,
    within: Duration,
) -> (Vec<Result<Vec<AccountView>, String>>, Option<f64>) {
    let t = Instant::now();
    let mut last: Option<Vec<AccountView>> = None;
    loop {
        let mut all = Vec::new();
        for addr in http {
            all.push(ledger(addr, accounts).await.map_err(|e| format!("{e:#}")));
        }
        let first = all[0].as_ref().ok().cloned();
        let same = first.is_some() && all.iter().all(|l| l.as_ref().ok() == first.as_ref());
        if same && first == last {
            return (all, Some(t.elapsed().as_secs_f64()));
        }
        if t.elapsed() > within {
            return (all, None);
        }
        last = if same { first } else { None };
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One account as the check found it.
#[derive(Clone, Debug, Serialize)]
pub struct AccountFound {
    pub account: usize,
    /// As the nodes report it (node 0's view when they agree).
    #[serde(flatten)]
    pub view: AccountView,
    /// Its transfers applied, S_a (`None`: the equations have no whole
    /// solution).
    pub applied: Option<u64>,
    pub acked: usize,
    pub unacked: u64,
}

/// What the AT2 checks found.
#[derive(Clone, Debug, Serialize)]
pub struct At2Found {
    /// Seconds from the end of the faults until every node acknowledged a
    /// transfer.
    pub served_again_s: Option<f64>,
    /// Seconds until every node reported the same ledger (twice in a row).
    pub converged_s: Option<f64>,
    pub initial_balance: u64,
    pub supply: i128,
    pub supply_conserved: bool,
    pub accounts: Vec<AccountFound>,
}

/// Check the ledgers the nodes reported against what was issued.
pub(crate) fn check(
    ledgers: &[Result<Vec<AccountView>, String>],
    converged: Option<f64>,
    issued: &Issued,
    initial: u64,
    served_again_s: Option<f64>,
) -> (At2Found, Vec<String>) {
    let mut v = Vec::new();
    for (i, l) in ledgers.iter().enumerate() {
        if let Err(e) = l {
            v.push(format!("reading node {i}'s ledger: {e}"));
        }
    }
    if converged.is_none() {
        let shown: Vec<String> = ledgers.iter().map(|l| format!("{l:?}")).collect();
        v.push(format!(
            "the nodes' ledgers did not converge within 60 s: {}",
            shown.join(" / ")
        ));
    }
    let views = ledgers
        .iter()
        .find_map(|l| l.as_ref().ok())
        .cloned()
        .unwrap_or_default();
    let n = views.len();
    // S_a from account a's equations, and S_{a-1} as account a sees it
    let solve = |a: usize, w: &AccountView| -> Option<(u64, u64)> {
        let (x, y) = (amount(a) as i128, amount((a + n - 1) % n) as i128);
        let num = initial as i128 - w.balance as i128 + y * w.total as i128;
        (num >= 0 && num % (x + y) == 0).then_some(())?;
        let s = (num / (x + y)) as u64;
        (s <= w.total).then_some((s, w.total - s))
    };
    let solved: Vec<Option<(u64, u64)>> =
        views.iter().enumerate().map(|(a, w)| solve(a, w)).collect();
    let mut accounts = Vec::new();
    for (a, w) in views.iter().enumerate() {
        let acked = issued.acked.get(&a).cloned().unwrap_or_default();
        let unacked = issued.unacked.get(&a).copied().unwrap_or(0);
        let s = solved[a].map(|s| s.0);
        v.extend(account_violations(a, w, s, &acked, unacked));
        if let (Some((_, prev_seen)), Some((prev, _))) = (solved[a], solved[(a + n - 1) % n]) {
            if prev_seen != prev {
                v.push(format!(
                    "account {a} received {prev_seen} transfers, account {} applied {prev} to it",
                    (a + n - 1) % n
                ));
            }
        }
        accounts.push(AccountFound {
            account: a,
            view: *w,
            applied: s,
            acked: acked.len(),
            unacked,
        });
    }
    let supply: i128 = views.iter().map(|w| w.balance as i128).sum();
    let want = initial as i128 * n as i128;
    if supply != want {
        v.push(format!("the supply is {supply}, not {want}"));
    }
    if issued.acked_count() == 0 {
        v.push("no transfer was acknowledged: nothing was checked".into());
    }
    let found = At2Found {
        served_again_s,
        converged_s: converged,
        initial_balance: initial,
        supply,
        supply_conserved: supply == want,
        accounts,
    };
    (found, v)
}

/// The violations of account `a` (`s`: its applied transfers, if the
/// equations have a whole solution).
fn account_violations(
    a: usize,
    w: &AccountView,
    s: Option<u64>,
    acked: &[u64],
    unacked: u64,
) -> Vec<String> {
    let mut v = Vec::new();
    if w.balance < 0 {
        v.push(format!("account {a} has a negative balance {}", w.balance));
    }
    let Some(s) = s else {
        v.push(format!(
            "account {a}: balance {} with {} transfers fits no count of its transfers",
            w.balance, w.total
        ));
        return v;
    };
    if let Some(seq) = w.seq.filter(|q| *q != s) {
        v.push(format!(
            "account {a}: {s} transfers applied, but the newest has sequence number {seq}"
        ));
    }
    if let Some(max) = acked.iter().max().filter(|m| **m > s) {
        v.push(format!(
            "account {a}: acknowledged transfer #{max} is not applied ({s} are)"
        ));
    }
    let distinct: std::collections::BTreeSet<u64> = acked.iter().copied().collect();
    if distinct.len() < acked.len() {
        v.push(format!(
            "account {a}: {} acknowledged transfers share a sequence number with an earlier one (the owner reused numbers)",
            acked.len() - distinct.len()
        ));
    }
    if acked.len() as u64 > s {
        v.push(format!(
            "account {a}: {} transfers acknowledged, {s} applied",
            acked.len()
        ));
    }
    let sent = acked.len() as u64 + unacked;
    if s > sent {
        v.push(format!(
            "account {a}: {s} transfers applied, {sent} sent (one applied twice?)"
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ledger of 4 accounts after S_a transfers of each.
    fn ledger_after(s: [u64; 4], initial: u64) -> Vec<Result<Vec<AccountView>, String>> {
        let views: Vec<AccountView> = (0..4)
            .map(|a| {
                let p = (a + 3) % 4;
                AccountView {
                    balance: initial as i64 - (amount(a) * s[a]) as i64 + (amount(p) * s[p]) as i64,
                    total: s[a] + s[p],
                    seq: (s[a] > 0).then_some(s[a]),
                }
            })
            .collect();
        vec![Ok(views); 4]
    }

    fn issued(acked: [u64; 4], unacked: u64) -> Issued {
        let mut i = Issued::default();
        for (a, n) in acked.iter().enumerate() {
            i.acked.insert(a, (1..=*n).collect());
            i.unacked.insert(a, unacked);
        }
        i
    }

    #[test]
    fn a_consistent_ledger_passes_and_each_kind_of_damage_is_caught() {
        let ok = ledger_after([10, 7, 3, 0], 1000);
        let (f, v) = check(&ok, Some(1.0), &issued([9, 7, 2, 0], 1), 1000, Some(0.1));
        assert!(v.is_empty(), "{v:?}");
        assert!(f.supply_conserved);
        assert_eq!(f.accounts[0].applied, Some(10));
        // an acknowledged transfer missing
        let (_, v) = check(&ok, Some(1.0), &issued([11, 7, 2, 0], 0), 1000, None);
        assert!(v.iter().any(|e| e.contains("#11 is not applied")), "{v:?}");
        // an owner that started over: numbers acknowledged twice, fewer
        // applied than acknowledged
        let mut again = issued([10, 7, 3, 0], 0);
        again.acked.get_mut(&0).unwrap().extend(1..=4);
        let (_, v) = check(&ok, Some(1.0), &again, 1000, None);
        assert!(v.iter().any(|e| e.contains("reused numbers")), "{v:?}");
        assert!(
            v.iter()
                .any(|e| e.contains("14 transfers acknowledged, 10 applied")),
            "{v:?}"
        );
        // more applied than sent
        let (_, v) = check(&ok, Some(1.0), &issued([8, 7, 3, 0], 0), 1000, None);
        assert!(v.iter().any(|e| e.contains("applied twice")), "{v:?}");
        // money from nowhere: account 2 credited once more
        let mut bad = ledger_after([10, 7, 3, 0], 1000);
        if let Ok(l) = &mut bad[0] {
            l[2].balance += 2;
            l[2].total += 1;
        }
        let (f, v) = check(&bad, None, &issued([10, 7, 3, 0], 0), 1000, None);
        assert!(!f.supply_conserved, "{v:?}");
        assert!(v.iter().any(|e| e.contains("did not converge")), "{v:?}");
        assert!(v.iter().any(|e| e.contains("received")), "{v:?}");
        // a newest sequence number that does not match the count
        let mut skew = ledger_after([10, 7, 3, 0], 1000);
        for l in skew.iter_mut().flatten() {
            l[1].seq = Some(9);
        }
        let (_, v) = check(&skew, Some(1.0), &issued([10, 7, 3, 0], 0), 1000, None);
        assert!(v.iter().any(|e| e.contains("sequence number 9")), "{v:?}");
    }
}
