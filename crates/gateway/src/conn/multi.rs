//! A connection's transaction: `MULTI`, `EXEC`, `DISCARD`, `WATCH`, `UNWATCH`
//! (see the crate docs, "Transactions").

use bytes::Bytes;
use byzscale_apps::kv::{KvOp, KvReply};

use super::{Action, Conn, LOCAL_COMMANDS};
use crate::resp;

/// Redis's reply to `EXEC` after a command was refused while queueing.
const ERR_EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
/// The bytes counted per word of a queued command or watched key, on top of its
/// own (its length in the operation's encoding, with room to spare).
const WORD_OVERHEAD: usize = 10;

/// The transaction being queued, between `MULTI` and `EXEC`.
#[derive(Default)]
pub(super) struct Multi {
    /// The queued commands: `Ok(line)` for the store, `Err(reply)` for one the
    /// gateway answers itself (`ECHO`, `UNWATCH`).
    queued: Vec<Result<Vec<Vec<u8>>, KvReply>>,
    /// The bytes counted for `queued` ([`WORD_OVERHEAD`] per word).
    bytes: usize,
    /// A command was refused while queueing: `EXEC` answers `EXECABORT`.
    failed: bool,
}

/// The bytes counted for these words.
fn cost<'a>(words: impl IntoIterator<Item = &'a [u8]>) -> usize {
    words
        .into_iter()
        .fold(0usize, |n, w| n.saturating_add(w.len() + WORD_OVERHEAD))
}

/// The reply to `EXEC` from the store's reply to its operation: the gateway's own
/// replies (`Some`) spliced in at their positions among the store's.
pub(super) fn splice_exec(reply: KvReply, local: &[Option<KvReply>]) -> KvReply {
    let KvReply::List(store) = reply else {
        // the nil array (a watched key changed) or an error
        return reply;
    };
    if store.len() != local.iter().filter(|r| r.is_none()).count() {
        return KvReply::Error("ERR unexpected EXEC reply from the store".into());
    }
    let mut store = store.into_iter();
    KvReply::List(
        local
            .iter()
            .filter_map(|r| r.clone().or_else(|| store.next()))
            .collect(),
    )
}

impl Conn {
    /// The most bytes (counted as [`cost`]) the queued commands and watched keys
    /// of one `EXEC` may take: what one operation may carry.
    fn transaction_limit(&self) -> usize {
        let o = &self.shared.opts;
        o.max_op_bytes.min(o.max_request_len)
    }

    fn watched_bytes(&self) -> usize {
        cost(self.watched.iter().map(|(k, _)| k.as_slice()))
    }

    /// A transaction command, or any command while queueing; `None` for the
    /// others (and `QUIT`, `POST` while queueing), which run as usual.
    pub(super) fn transaction(&mut self, name: &[u8], args: &[Bytes]) -> Option<Action> {
        let argc = args.len();
        let queueing = self.multi.is_some();
        let reply = match name {
            b"multi" | b"exec" | b"discard" | b"unwatch" if argc != 1 => self.refused(
                &super::commands::wrong_arity(&String::from_utf8_lossy(name)),
            ),
            b"multi" if queueing => self.error("ERR MULTI calls can not be nested"),
            b"multi" => {
                self.multi = Some(Multi::default());
                resp::simple("OK")
            }
            b"exec" => return Some(self.exec()),
            b"discard" if !queueing => self.error("ERR DISCARD without MULTI"),
            b"discard" => {
                self.multi = None;
                self.watched.clear();
                resp::simple("OK")
            }
            b"watch" if queueing => self.error("ERR WATCH inside MULTI is not allowed"),
            b"watch" if argc < 2 => self.arity("watch"),
            b"watch" => {
                return Some(Action::Watch(
                    args[1..].iter().map(|a| a.to_vec()).collect(),
                ))
            }
            b"unwatch" if !queueing => {
                self.watched.clear();
                resp::simple("OK")
            }
            _ if !queueing => return None,
            b"quit" | b"post" | b"host:" => return None,
            _ => self.queue(name, args),
        };
        Some(Action::Reply(reply))
    }

    /// An error reply to a command refused while queueing, which makes the
    /// transaction fail (`EXECABORT`), as in Redis.
    fn refused(&mut self, text: &str) -> Vec<u8> {
        if let Some(m) = &mut self.multi {
            m.failed = true;
        }
        self.error(text)
    }

    /// Queue a command after `MULTI`: `+QUEUED`, or the error that makes `EXEC`
    /// fail (unknown command, wrong arity, a gateway command the store cannot run
    /// inside a transaction, the size limit).
    fn queue(&mut self, name: &[u8], args: &[Bytes]) -> Vec<u8> {
        let item = match name {
            b"unwatch" => Err(KvReply::Ok),
            b"echo" if args.len() == 2 => Err(KvReply::Bulk(args[1].to_vec())),
            b"echo" => return self.refused(&super::commands::wrong_arity("echo")),
            _ if LOCAL_COMMANDS.contains(&&*String::from_utf8_lossy(name)) => {
                return self.refused(&format!(
                    "ERR {} inside MULTI is not supported by the byzscale gateway",
                    String::from_utf8_lossy(name).to_ascii_uppercase()
                ))
            }
            _ => match KvOp::from_args(args) {
                Err(text) => return self.refused(&text),
                Ok(_) => {
                    let mut line: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
                    line[0] = name.to_vec();
                    Ok(line)
                }
            },
        };
        let size = cost(args.iter().map(|a| &a[..]));
        let queued = self.multi.as_ref().map_or(0, |m| m.bytes);
        let total = queued
            .saturating_add(size)
            .saturating_add(self.watched_bytes());
        let limit = self.transaction_limit();
        if total > limit {
            return self.refused(&format!(
                "ERR transaction too large: its commands and watched keys would take \
                 {total} bytes, the replicated service accepts at most {limit} bytes per \
                 transaction (max_op_bytes)"
            ));
        }
        if let Some(m) = &mut self.multi {
            m.queued.push(item);
            m.bytes = queued.saturating_add(size);
        }
        resp::simple("QUEUED")
    }

    /// `EXEC`: the transaction as one operation, with the watched keys; the
    /// transaction and the watches end.
    fn exec(&mut self) -> Action {
        let Some(multi) = self.multi.take() else {
            return Action::Reply(self.error("ERR EXEC without MULTI"));
        };
        let watch = std::mem::take(&mut self.watched);
        if multi.failed {
            return Action::Reply(self.error(ERR_EXECABORT));
        }
        let mut cmds = Vec::new();
        let mut local = Vec::with_capacity(multi.queued.len());
        for item in multi.queued {
            match item {
                Ok(line) => {
                    cmds.push(line);
                    local.push(None);
                }
                Err(reply) => local.push(Some(reply)),
            }
        }
        Action::Exec(KvOp::Exec { watch, cmds }, local)
    }

    /// `WATCH key...`: the keys' versions, from the store in request order, kept
    /// for the next `EXEC`.
    pub(super) async fn watch(&mut self, keys: Vec<Vec<u8>>) -> Vec<u8> {
        let total = self
            .watched_bytes()
            .saturating_add(cost(keys.iter().map(Vec::as_slice)));
        let limit = self.transaction_limit();
        if total > limit {
            return self.error(&format!(
                "ERR too many watched keys: they would take {total} bytes, the replicated \
                 service accepts at most {limit} bytes per transaction (max_op_bytes)"
            ));
        }
        let op = KvOp::Watch(keys);
        match self.call(op.clone()).await {
            Ok(KvReply::Error(text)) => self.error(&text),
            Ok(reply) => match byzscale_apps::kv::multi::watched(&op, &reply) {
                Some(got) => {
                    self.watched.extend(got);
                    resp::simple("OK")
                }
                None => self.error("ERR unexpected WATCH reply from the store"),
            },
            Err(text) => self.error(&format!("ERR {text}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Offline;
    use crate::GatewayOptions;

    fn run(c: &mut Offline, input: &str) -> String {
        let input = input.replace('\n', "\r\n");
        String::from_utf8_lossy(&c.feed(input.as_bytes())).replace("\r\n", "|")
    }

    fn conn() -> Offline {
        Offline::new(GatewayOptions::default())
    }

    /// Redis 7.0's replies and error texts (checked against `redis-server`).
    #[test]
    fn transaction_commands_answer_as_redis() {
        let mut c = conn();
        assert_eq!(
            run(&mut c, "EXEC\nDISCARD\nUNWATCH\nWATCH\nMULTI x\n"),
            "-ERR EXEC without MULTI|-ERR DISCARD without MULTI|+OK|\
             -ERR wrong number of arguments for 'watch' command|\
             -ERR wrong number of arguments for 'multi' command|"
        );
        assert_eq!(
            run(
                &mut c,
                "MULTI\nMULTI\nWATCH k\nSET k v\nINCR k\nGET k\nPING\nECHO hi\nUNWATCH\nEXEC\n"
            ),
            "+OK|-ERR MULTI calls can not be nested|-ERR WATCH inside MULTI is not allowed|\
             +QUEUED|+QUEUED|+QUEUED|+QUEUED|+QUEUED|+QUEUED|\
             *6|+OK|-ERR value is not an integer or out of range|$1|v|+PONG|$2|hi|+OK|"
        );
        assert_eq!(
            run(
                &mut c,
                "MULTI\nEXEC\nMULTI\nSET a 1\nDISCARD\nGET a\nEXEC\n"
            ),
            "+OK|*0|+OK|+QUEUED|+OK|$-1|-ERR EXEC without MULTI|"
        );
    }

    #[test]
    fn a_command_refused_while_queueing_aborts_the_exec() {
        for bad in [
            "SET k",
            "NOSUCH x",
            "ECHO",
            "CLIENT ID",
            "SELECT 0",
            "HELLO 3",
            "EXEC x",
        ] {
            let mut c = conn();
            let out = run(
                &mut c,
                &format!("MULTI\nSET a 1\n{bad}\nSET b 2\nEXEC\nGET a\n"),
            );
            assert!(
                out.starts_with("+OK|+QUEUED|-ERR ") && out.contains("|+QUEUED|"),
                "{bad}: {out}"
            );
            assert!(
                out.ends_with("|-EXECABORT Transaction discarded because of previous errors.|$-1|"),
                "{bad}: {out}"
            );
            // the transaction is over
            assert_eq!(run(&mut c, "EXEC\n"), "-ERR EXEC without MULTI|");
        }
    }

    #[test]
    fn watch_makes_exec_nil_in_resp2_and_resp3() {
        let mut c = conn();
        // the connection's own write counts, as in Redis
        assert_eq!(
            run(
                &mut c,
                "SET k 1\nWATCH k\nSET k 2\nMULTI\nSET k 3\nEXEC\nGET k\n"
            ),
            "+OK|+OK|+OK|+OK|+QUEUED|*-1|$1|2|"
        );
        // EXEC ends the watch: the next one runs
        assert_eq!(run(&mut c, "MULTI\nINCR k\nEXEC\n"), "+OK|+QUEUED|*1|:3|");
        // UNWATCH and DISCARD end it too
        assert_eq!(
            run(&mut c, "WATCH k\nINCR k\nUNWATCH\nMULTI\nINCR k\nEXEC\n"),
            "+OK|:4|+OK|+OK|+QUEUED|*1|:5|"
        );
        assert_eq!(
            run(
                &mut c,
                "WATCH k\nINCR k\nMULTI\nDISCARD\nMULTI\nINCR k\nEXEC\n"
            ),
            "+OK|:6|+OK|+OK|+OK|+QUEUED|*1|:7|"
        );
        // an unchanged watched key (another key written) lets it run
        assert_eq!(
            run(&mut c, "WATCH k nokey\nSET other 1\nMULTI\nGET k\nEXEC\n"),
            "+OK|+OK|+OK|+QUEUED|*1|$1|7|"
        );
        let hello = run(&mut c, "HELLO 3\n");
        assert!(hello.starts_with("%7|"));
        assert_eq!(
            run(
                &mut c,
                "WATCH k\nDEL k\nMULTI\nGET k\nEXEC\nMULTI\nGET k\nEXEC\n"
            ),
            "+OK|:1|+OK|+QUEUED|_|+OK|+QUEUED|*1|_|"
        );
    }

    #[test]
    fn the_transaction_is_bounded_in_bytes() {
        let mut c = Offline::new(GatewayOptions {
            max_op_bytes: 100,
            ..Default::default()
        });
        let big = "x".repeat(40);
        let out = run(&mut c, &format!("MULTI\nSET a {big}\nSET b {big}\nEXEC\n"));
        assert!(
            out.starts_with("+OK|+QUEUED|-ERR transaction too large: its commands and watched keys would take 148 bytes"),
            "{out}"
        );
        assert!(out.ends_with("|-EXECABORT Transaction discarded because of previous errors.|"));
        let keys: Vec<String> = (0..10).map(|i| format!("key{i}")).collect();
        let out = run(&mut c, &format!("WATCH {}\n", keys.join(" ")));
        assert!(out.starts_with("-ERR too many watched keys"), "{out}");
        assert_eq!(
            run(&mut c, "WATCH a\nMULTI\nGET a\nEXEC\n"),
            "+OK|+OK|+QUEUED|*1|$-1|"
        );
    }
}
