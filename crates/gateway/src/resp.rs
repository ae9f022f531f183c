//! RESP request parsing, and reply encoding in RESP2 or RESP3 ([`Proto`]).
//!
//! [`Parser`] turns the bytes a client sends into commands (each a non-empty list of
//! arguments). It accepts what Redis accepts:
//!
//! - multibulk requests, `*<n>\r\n` followed by `n` bulk strings `$<len>\r\n<bytes>\r\n`
//!   (what every client library, `redis-cli` and `redis-benchmark` send); `*0` and
//!   negative counts are skipped without a reply, like Redis does;
//! - inline commands, a line of whitespace-separated words with `"..."` and `'...'`
//!   quoting (Redis's `sdssplitargs`), ended by `\n` or `\r\n`, as typed into telnet or
//!   netcat; empty lines are skipped.
//!
//! Parsing is resumable: a partial request stays in the buffer (or, for bulk strings
//! already complete, in the parser) until the rest arrives, so a request split across
//! reads at any byte boundary parses the same, and a large request is not re-scanned
//! per read. Every size is checked against [`Limits`] *before* the bytes are waited
//! for, so a client cannot make the gateway buffer more than the limits allow.

use bytes::{Buf, Bytes, BytesMut};
use byzscale_apps::kv::{parse_integer, KvReply};

/// Size limits applied while parsing requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (one argument), in bytes.
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk request.
    pub max_array_len: usize,
    /// Largest whole request, in bytes as received (headers included).
    pub max_request_len: usize,
    /// Longest inline command line, in bytes.
    pub max_inline_len: usize,
}

/// The longest `*<n>` or `$<len>` header line we wait for (a sign, 19 digits, slack).
const MAX_HEADER_LEN: usize = 32;

/// A request that violates the protocol or a limit. The connection replies
/// `-ERR Protocol error: <message>` and is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn perr<T>(msg: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(msg.into()))
}

/// A multibulk request in progress.
#[derive(Debug)]
struct Partial {
    /// Bulk strings still expected.
    remaining: usize,
    /// The arguments received so far.
    args: Vec<Bytes>,
    /// Bytes of this request consumed so far (headers included).
    consumed: usize,
}

/// A resumable RESP2 request parser (see the module docs).
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    partial: Option<Partial>,
    /// Bytes of an incomplete inline line already searched for its `\n`, so
    /// that a line arriving in small pieces is scanned once, not once per piece.
    scanned: usize,
}

/// Position of the first `\r\n` in `buf`, searching at most `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Option<usize> {
    let end = buf.len().min(limit);
    buf[..end].windows(2).position(|w| w == b"\r\n")
}

impl Parser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            partial: None,
            scanned: 0,
        }
    }

    /// Take the next complete command out of `buf`: `Ok(Some(args))` with at least one
    /// argument, `Ok(None)` if more bytes are needed (what was consumed so far is
    /// remembered), or a protocol error after which the parser must not be used again.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if let Some(p) = &mut self.partial {
                match Self::bulk(&self.limits, p, buf)? {
                    None => return Ok(None),
                    Some(arg) => {
                        p.args.push(arg);
                        p.remaining -= 1;
                        if p.remaining == 0 {
                            let done = self.partial.take().map(|p| p.args).unwrap_or_default();
                            return Ok(Some(done));
                        }
                    }
                }
                continue;
            }
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first == b'*' {
                let Some(end) = find_crlf(buf, MAX_HEADER_LEN) else {
                    if buf.len() >= MAX_HEADER_LEN {
                        return perr("invalid multibulk length");
                    }
                    return Ok(None);
                };
                let n = match parse_integer(&buf[1..end]) {
                    Some(n) if n <= 0 => {
                        // `*0` and `*-1`: nothing to run, like Redis
                        buf.advance(end + 2);
                        continue;
                    }
                    Some(n) if (n as u64) <= self.limits.max_array_len as u64 => n as usize,
                    _ => return perr("invalid multibulk length"),
                };
                buf.advance(end + 2);
                self.partial = Some(Partial {
                    remaining: n,
                    args: Vec::with_capacity(n.min(64)),
                    consumed: end + 2,
                });
            } else if let Some(args) = self.inline(buf)? {
                if !args.is_empty() {
                    return Ok(Some(args));
                }
            } else {
                return Ok(None);
            }
        }
    }

    /// The next bulk string of a multibulk request, if it is complete in `buf`.
    fn bulk(
        limits: &Limits,
        p: &mut Partial,
        buf: &mut BytesMut,
    ) -> Result<Option<Bytes>, ProtocolError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first != b'$' {
            let shown = if first.is_ascii_graphic() {
                (first as char).to_string()
            } else {
                format!("\\x{first:02x}")
            };
            return perr(format!("expected '$', got '{shown}'"));
        }
        let Some(end) = find_crlf(buf, MAX_HEADER_LEN) else {
            if buf.len() >= MAX_HEADER_LEN {
                return perr("invalid bulk length");
            }
            return Ok(None);
        };
        let len = match parse_integer(&buf[1..end]) {
            Some(n) if n >= 0 && (n as u64) <= limits.max_bulk_len as u64 => n as usize,
            _ => return perr("invalid bulk length"),
        };
        let total = end + 2 + len + 2;
        if p.consumed.saturating_add(total) > limits.max_request_len {
            return perr("request too large");
        }
        if buf.len() < total {
            return Ok(None);
        }
        if &buf[total - 2..total] != b"\r\n" {
            return perr("expected CRLF after bulk string");
        }
        buf.advance(end + 2);
        let arg = buf.split_to(len).freeze();
        buf.advance(2);
        p.consumed += total;
        Ok(Some(arg))
    }

    /// An inline command line, if complete: `Ok(Some(vec![]))` for a blank line.
    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let limit = self.limits.max_inline_len.saturating_add(1);
        let end = buf.len().min(limit);
        let from = self.scanned.min(end);
        let Some(nl) = buf[from..end].iter().position(|&c| c == b'\n') else {
            if buf.len() >= limit {
                return perr("too big inline request");
            }
            self.scanned = end;
            return Ok(None);
        };
        self.scanned = 0;
        let line = buf.split_to(from + nl + 1);
        let mut line = &line[..from + nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        match split_args(line) {
            Some(args) => Ok(Some(args.into_iter().map(Bytes::from).collect())),
            None => perr("unbalanced quotes in request"),
        }
    }

    /// How many more bytes the request in progress needs at least, as a hint for
    /// sizing the read buffer (0 if unknown).
    pub fn wanted(&self, buf: &[u8]) -> usize {
        if self.partial.is_none() || buf.first() != Some(&b'$') {
            return 0;
        }
        let Some(end) = find_crlf(buf, MAX_HEADER_LEN) else {
            return 0;
        };
        match parse_integer(&buf[1..end]) {
            Some(n) if n >= 0 && (n as u64) <= self.limits.max_bulk_len as u64 => {
                (end + 2 + n as usize + 2).saturating_sub(buf.len())
            }
            _ => 0,
        }
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Split an inline command line into arguments like Redis's `sdssplitargs`:
/// whitespace separates words; `"..."` supports `\n \r \t \b \a \\ \"` and `\xHH`
/// escapes; `'...'` supports `\'`; a closing quote must be followed by whitespace or
/// the end. `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            let c = line.get(i).copied();
            if in_dq {
                match c {
                    None => return None,
                    Some(b'\\')
                        if line.get(i + 1) == Some(&b'x')
                            && line.get(i + 2).copied().and_then(hex_digit).is_some()
                            && line.get(i + 3).copied().and_then(hex_digit).is_some() =>
                    {
                        let hi = hex_digit(line[i + 2]).unwrap_or(0);
                        let lo = hex_digit(line[i + 3]).unwrap_or(0);
                        cur.push(hi * 16 + lo);
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        cur.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(c) => cur.push(c),
                }
            } else if in_sq {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        cur.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(c) => cur.push(c),
                }
            } else {
                match c {
                    None => break,
                    Some(c) if is_space(c) => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(c) => cur.push(c),
                }
            }
            i += 1;
        }
        args.push(cur);
    }
}

/// `+<s>\r\n`
pub fn simple(s: &str) -> Vec<u8> {
    format!("+{s}\r\n").into_bytes()
}

/// `-<text>\r\n`, with CR and LF in `text` replaced by spaces so the reply stays one
/// line. `text` should start with an error code such as `ERR`.
pub fn error(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 3);
    out.push(b'-');
    out.extend(
        text.bytes()
            .map(|c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
    );
    out.extend_from_slice(b"\r\n");
    out
}

/// The protocol a connection speaks (`HELLO 2` / `HELLO 3`); it decides how a nil, a
/// nil array, a double (`ZSCORE`), a map (`HGETALL`), a set (`SMEMBERS`) and pairs
/// (`ZRANGE ... WITHSCORES`) are written. Every other reply type the store's commands
/// use is the same in both (Redis 7 sends `TYPE` as a status, `KEYS`/`SCAN`/`MGET`/
/// `HKEYS`/`LRANGE` as arrays).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// RESP2 (the default of a new connection).
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

impl Proto {
    /// The `HELLO` version number.
    pub fn version(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// A store's reply as Redis would send it in `proto`.
pub fn reply(r: &KvReply, proto: Proto) -> Vec<u8> {
    let mut out = Vec::new();
    push_reply(&mut out, r, proto);
    out
}

fn push_reply(out: &mut Vec<u8>, r: &KvReply, proto: Proto) {
    match r {
        KvReply::Ok => out.extend_from_slice(b"+OK\r\n"),
        KvReply::Pong => out.extend_from_slice(b"+PONG\r\n"),
        KvReply::Status(s) => out.extend_from_slice(&simple(s)),
        KvReply::Nil => push_nil(out, proto),
        KvReply::Bulk(b) => push_bulk(out, Some(b)),
        KvReply::Int(i) => out.extend_from_slice(&int(*i)),
        KvReply::Array(items) => {
            array_header(out, items.len());
            for item in items {
                match item {
                    Some(b) => push_bulk(out, Some(b)),
                    None => push_nil(out, proto),
                }
            }
        }
        KvReply::List(items) => {
            array_header(out, items.len());
            for item in items {
                push_reply(out, item, proto);
            }
        }
        KvReply::Error(e) => out.extend_from_slice(&error(e)),
        KvReply::Double(d) => push_double(out, d, proto),
        KvReply::Map(pairs) => {
            map_header(out, pairs.len(), proto);
            for (k, v) in pairs {
                push_reply(out, k, proto);
                push_reply(out, v, proto);
            }
        }
        KvReply::Set(items) => {
            match proto {
                Proto::Resp2 => array_header(out, items.len()),
                Proto::Resp3 => out.extend_from_slice(format!("~{}\r\n", items.len()).as_bytes()),
            }
            for item in items {
                push_reply(out, item, proto);
            }
        }
        KvReply::Pairs(pairs) => {
            // RESP2: flat; RESP3: an array of two-element arrays (Redis 7's ZRANGE
            // WITHSCORES)
            array_header(out, pairs.len() * if proto == Proto::Resp2 { 2 } else { 1 });
            for (a, b) in pairs {
                if proto == Proto::Resp3 {
                    array_header(out, 2);
                }
                push_reply(out, a, proto);
                push_reply(out, b, proto);
            }
        }
        KvReply::NilArray => out.extend_from_slice(match proto {
            Proto::Resp2 => b"*-1\r\n",
            Proto::Resp3 => b"_\r\n",
        }),
    }
}

/// Append a double given as Redis writes it (`%.17g`, `inf`): a bulk string in RESP2,
/// `,<text>` in RESP3 (CR and LF, which no formatted double has, become spaces).
pub fn push_double(out: &mut Vec<u8>, text: &str, proto: Proto) {
    match proto {
        Proto::Resp2 => push_bulk(out, Some(text.as_bytes())),
        Proto::Resp3 => {
            out.push(b',');
            out.extend(
                text.bytes()
                    .map(|c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
            );
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Append a nil: `$-1` in RESP2, `_` in RESP3.
pub fn push_nil(out: &mut Vec<u8>, proto: Proto) {
    out.extend_from_slice(match proto {
        Proto::Resp2 => b"$-1\r\n",
        Proto::Resp3 => b"_\r\n",
    });
}

/// A map header for `n` key-value pairs: `%<n>` in RESP3, an array of `2n` elements
/// in RESP2 (the caller appends the pairs).
pub fn map_header(out: &mut Vec<u8>, n: usize, proto: Proto) {
    match proto {
        Proto::Resp2 => array_header(out, 2 * n),
        Proto::Resp3 => out.extend_from_slice(format!("%{n}\r\n").as_bytes()),
    }
}

/// `:<i>\r\n`
pub fn int(i: i64) -> Vec<u8> {
    format!(":{i}\r\n").into_bytes()
}

/// Append a bulk string (`None`: the nil bulk string `$-1`).
pub fn push_bulk(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.extend_from_slice(b"$-1\r\n"),
        Some(b) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A bulk string reply.
pub fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 16);
    push_bulk(&mut out, Some(b));
    out
}

/// A nil reply in `proto`.
pub fn nil(proto: Proto) -> Vec<u8> {
    let mut out = Vec::new();
    push_nil(&mut out, proto);
    out
}

/// An array header `*<n>\r\n` (the caller appends `n` elements).
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(format!("*{n}\r\n").as_bytes());
}

/// An array of bulk strings.
pub fn bulk_array<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let items: Vec<&[u8]> = items.into_iter().collect();
    let mut out = Vec::new();
    array_header(&mut out, items.len());
    for item in items {
        push_bulk(&mut out, Some(item));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_replies_in_resp2_and_resp3() {
        let b = |s: &str| s.as_bytes().to_vec();
        for proto in [Proto::Resp2, Proto::Resp3] {
            assert_eq!(reply(&KvReply::Ok, proto), b"+OK\r\n");
            assert_eq!(reply(&KvReply::Pong, proto), b"+PONG\r\n");
            assert_eq!(
                reply(&KvReply::Status("string".into()), proto),
                b"+string\r\n"
            );
            assert_eq!(reply(&KvReply::Bulk(b("hi")), proto), b"$2\r\nhi\r\n");
            assert_eq!(reply(&KvReply::Int(-3), proto), b":-3\r\n");
            assert_eq!(
                reply(&KvReply::Error("ERR x\r\ny".into()), proto),
                b"-ERR x  y\r\n"
            );
        }
        assert_eq!(reply(&KvReply::Nil, Proto::Resp2), b"$-1\r\n");
        assert_eq!(reply(&KvReply::Nil, Proto::Resp3), b"_\r\n");
        let mget = KvReply::Array(vec![Some(b("a")), None]);
        assert_eq!(reply(&mget, Proto::Resp2), b"*2\r\n$1\r\na\r\n$-1\r\n");
        assert_eq!(reply(&mget, Proto::Resp3), b"*2\r\n$1\r\na\r\n_\r\n");
        let scan = KvReply::List(vec![
            KvReply::Bulk(b("0")),
            KvReply::List(vec![KvReply::Bulk(b("k"))]),
        ]);
        assert_eq!(
            reply(&scan, Proto::Resp3),
            b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"
        );
        let bs = |s: &str| KvReply::Bulk(b(s));
        let score = KvReply::Double("1.5".into());
        assert_eq!(reply(&score, Proto::Resp2), b"$3\r\n1.5\r\n");
        assert_eq!(reply(&score, Proto::Resp3), b",1.5\r\n");
        assert_eq!(
            reply(&KvReply::Double("-inf".into()), Proto::Resp3),
            b",-inf\r\n"
        );
        let map = KvReply::Map(vec![(bs("f"), bs("v"))]);
        assert_eq!(reply(&map, Proto::Resp2), b"*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
        assert_eq!(reply(&map, Proto::Resp3), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
        let set = KvReply::Set(vec![bs("a")]);
        assert_eq!(reply(&set, Proto::Resp2), b"*1\r\n$1\r\na\r\n");
        assert_eq!(reply(&set, Proto::Resp3), b"~1\r\n$1\r\na\r\n");
        assert_eq!(reply(&KvReply::Set(vec![]), Proto::Resp3), b"~0\r\n");
        let pairs = KvReply::Pairs(vec![(bs("m"), score.clone())]);
        assert_eq!(
            reply(&pairs, Proto::Resp2),
            b"*2\r\n$1\r\nm\r\n$3\r\n1.5\r\n"
        );
        assert_eq!(
            reply(&pairs, Proto::Resp3),
            b"*1\r\n*2\r\n$1\r\nm\r\n,1.5\r\n"
        );
        assert_eq!(reply(&KvReply::NilArray, Proto::Resp2), b"*-1\r\n");
        assert_eq!(reply(&KvReply::NilArray, Proto::Resp3), b"_\r\n");
        let mut m = Vec::new();
        map_header(&mut m, 2, Proto::Resp2);
        map_header(&mut m, 2, Proto::Resp3);
        assert_eq!(m, b"*4\r\n%2\r\n");
    }

    fn limits() -> Limits {
        Limits {
            max_bulk_len: 100,
            max_array_len: 10,
            max_request_len: 300,
            max_inline_len: 64,
        }
    }

    fn strs(args: &[Bytes]) -> Vec<String> {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    /// Parse everything in `input`, fed in chunks of `chunk` bytes.
    fn parse_chunked(input: &[u8], chunk: usize) -> Result<Vec<Vec<String>>, ProtocolError> {
        let mut p = Parser::new(limits());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(args) = p.next(&mut buf)? {
                out.push(strs(&args));
            }
        }
        Ok(out)
    }

    fn cmd(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn multibulk_and_inline_at_every_split() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhe\r\no\r\n\
                      *0\r\n*-1\r\nPING\r\n\r\n  \n\
                      set \"a b\" 'c d'\n*1\r\n$0\r\n\r\n";
        let want = vec![
            cmd(&["SET", "k", "he\r\no"]),
            cmd(&["PING"]),
            cmd(&["set", "a b", "c d"]),
            cmd(&[""]),
        ];
        for chunk in 1..=input.len() {
            assert_eq!(parse_chunked(input, chunk).unwrap(), want, "chunk {chunk}");
        }
    }

    #[test]
    fn incomplete_input_waits() {
        let mut p = Parser::new(limits());
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\n"[..]);
        assert_eq!(p.next(&mut buf), Ok(None));
        assert_eq!(p.wanted(&buf), 3);
        buf.extend_from_slice(b"k\r");
        assert_eq!(p.next(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n");
        assert_eq!(
            p.next(&mut buf).unwrap().map(|a| strs(&a)),
            Some(cmd(&["GET", "k"]))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn protocol_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "invalid multibulk length"),
            (b"*11\r\n", "invalid multibulk length"),
            (b"*99999999999999999999999\r\n", "invalid multibulk length"),
            (b"*1\r\n:1\r\n", "expected '$', got ':'"),
            (b"*1\r\n\x00", "expected '$', got '\\x00'"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*1\r\n$101\r\n", "invalid bulk length"),
            (b"*1\r\n$abc\r\n", "invalid bulk length"),
            (b"*1\r\n$2\r\nabcd\r\n", "expected CRLF after bulk string"),
            (b"*1\r\n$1000\r\n", "invalid bulk length"),
            (b"set \"a\r\n", "unbalanced quotes in request"),
            (b"set \"a\"b\r\n", "unbalanced quotes in request"),
            (b"set 'a\r\n", "unbalanced quotes in request"),
        ];
        for (input, msg) in cases {
            assert_eq!(
                parse_chunked(input, input.len()),
                Err(ProtocolError(msg.to_string())),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // the request-size limit applies to the sum of the arguments
        let mut big = b"*4\r\n".to_vec();
        for _ in 0..4 {
            big.extend_from_slice(b"$90\r\n");
            big.extend_from_slice(&[b'x'; 90]);
            big.extend_from_slice(b"\r\n");
        }
        assert_eq!(
            parse_chunked(&big, 7),
            Err(ProtocolError("request too large".into()))
        );
        // headers and inline lines without an end are bounded too
        assert_eq!(
            parse_chunked(&[b'*'; 40], 40),
            Err(ProtocolError("invalid multibulk length".into()))
        );
        assert_eq!(
            parse_chunked(b"*1\r\n$11111111111111111111111111111111111", 5),
            Err(ProtocolError("invalid bulk length".into()))
        );
        assert_eq!(
            parse_chunked(&[b'a'; 65], 10),
            Err(ProtocolError("too big inline request".into()))
        );
        // but an inline line of exactly the limit is fine
        let mut line = vec![b'a'; 64];
        line.push(b'\n');
        assert_eq!(parse_chunked(&line, 3).unwrap().len(), 1);
    }

    #[test]
    fn an_inline_line_in_pieces_is_scanned_once() {
        // a 64 KiB line without its newline, one byte at a time: the search resumes
        // where it stopped (it used to rescan the whole line per byte,
        // quadratic work a slow client could ask for)
        let mut p = Parser::new(Limits {
            max_inline_len: 64 << 10,
            ..limits()
        });
        let mut buf = BytesMut::new();
        let n = (64 << 10) - 3; // with " b\r" the line is exactly the limit
        for i in 0..n {
            buf.extend_from_slice(b"a");
            assert_eq!(p.next(&mut buf), Ok(None));
            assert_eq!(p.scanned, i + 1);
        }
        buf.extend_from_slice(b" b\r\nGET k\r\n");
        let args = p.next(&mut buf).unwrap().unwrap();
        assert_eq!((args[0].len(), &args[1][..]), (n, &b"b"[..]));
        assert_eq!(p.scanned, 0);
        assert_eq!(
            strs(&p.next(&mut buf).unwrap().unwrap()),
            cmd(&["GET", "k"])
        );
    }

    #[test]
    fn split_args_like_sdssplitargs() {
        let s = |l: &str| {
            split_args(l.as_bytes()).map(|v| {
                v.into_iter()
                    .map(|a| String::from_utf8(a).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(s("  get   k "), Some(cmd(&["get", "k"])));
        assert_eq!(s(""), Some(vec![]));
        assert_eq!(
            s(r#"set k "a\tb\x41\"""#),
            Some(cmd(&["set", "k", "a\tbA\""]))
        );
        assert_eq!(s(r"set k 'it\'s'"), Some(cmd(&["set", "k", "it's"])));
        assert_eq!(s(r#"set k """#), Some(cmd(&["set", "k", ""])));
        assert_eq!(s(r#"a"b c""#), Some(cmd(&["ab c"])));
        assert_eq!(s(r#"a"b c"#), None);
        assert_eq!(s(r#"set k "x"#), None);
        assert_eq!(s("set k 'x"), None);
    }

    #[test]
    fn replies() {
        assert_eq!(simple("OK"), b"+OK\r\n");
        assert_eq!(error("ERR a\r\nb"), b"-ERR a  b\r\n");
        assert_eq!(int(-7), b":-7\r\n");
        assert_eq!(bulk(b""), b"$0\r\n\r\n");
        assert_eq!(nil(Proto::Resp2), b"$-1\r\n");
        assert_eq!(nil(Proto::Resp3), b"_\r\n");
        assert_eq!(
            bulk_array([&b"a"[..], b"bc"]),
            b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n"
        );
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"*$:+-\r\n0123456789-abc \"'\\x\x00\xff";
        for _ in 0..2000 {
            let len = rng.gen_range(0..80);
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let chunk = rng.gen_range(1..10);
            if let Ok(cmds) = parse_chunked(&input, chunk) {
                assert!(cmds.iter().all(|c| !c.is_empty()));
                assert_eq!(parse_chunked(&input, input.len().max(1)).ok(), Some(cmds));
            }
        }
    }
}
