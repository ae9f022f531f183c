//! What a peer sends, decoded and checked without I/O.
//!
//! The transport's connection tasks ([`crate::transport`]) only move bytes
//! between a socket and the functions here: the handshake as a small state
//! machine ([`Handshake`] → [`AwaitAuth`] → [`SessionKeys`]), the payloads of
//! an authenticated frame, plain or sealed ([`payloads`]), and the decoding of
//! one message ([`decode_message`]). The fuzz targets (`fuzz/`, harnesses in
//! `crates/fuzzing`) call the very same functions with the same limits, so
//! what they exercise is what a node runs.
//!
//! Every malformed input is a [`Fault`] (its `kind` is one of
//! [`crate::transport::FAULT_KINDS`]), never a panic.

use crate::transport::{HANDSHAKE_MAX, KIND_AUTH, KIND_HELLO, KIND_SEALED};
use byzscale_core::codec::{self, CodecError, HEADER_LEN};
use byzscale_core::crypto::{Crypto, CryptoMode, Identity, PublicIdentity, Signature};
use byzscale_core::{Addr, ClientId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const DOMAIN: &[u8] = b"byzscale-net handshake v1";
const SESSION_LABEL: &[u8] = b"byzscale-net session";

/// A peer's misbehaviour: the connection is closed, counted under `kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// One of [`crate::transport::FAULT_KINDS`].
    pub kind: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

pub(crate) fn fault(kind: &'static str, detail: impl Into<String>) -> Fault {
    Fault {
        kind,
        detail: detail.into(),
    }
}

/// A codec error in a frame header or a handshake frame.
pub(crate) fn codec_fault(e: CodecError) -> Fault {
    let kind = match e {
        CodecError::TooLarge { .. } => "oversized_frame",
        _ => "malformed_frame",
    };
    fault(kind, e.to_string())
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Hello {
    addr: Addr,
    nonce: [u8; 32],
    identity: PublicIdentity,
    kind: u8,
}

#[derive(Serialize, Deserialize, Debug)]
struct Auth {
    sig: Signature,
}

/// One side of the handshake before the peer's hello (see the transport's
/// module docs for the protocol).
#[derive(Clone)]
pub struct Handshake {
    me: Addr,
    identity: Identity,
    kind: u8,
    /// The address this side dialed; `None` on the accepting side.
    dialed: Option<Addr>,
    my_frame: Vec<u8>,
}

/// The handshake after the hellos, waiting for the peer's signature.
pub struct AwaitAuth {
    crypto: Crypto,
    peer: Addr,
    transcript: Vec<u8>,
    dialer: bool,
    new_client: Option<PublicIdentity>,
}

/// A completed handshake: the authenticated peer and the session key.
pub struct SessionKeys {
    pub peer: Addr,
    pub key: [u8; 32],
    /// Whether this side dialed (it then sends in direction 0).
    pub dialer: bool,
    /// The key of a client this endpoint did not know.
    pub new_client: Option<PublicIdentity>,
}

fn signed(role: u8, transcript: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(transcript.len() + 1);
    v.push(role);
    v.extend_from_slice(transcript);
    v
}

impl Handshake {
    /// Start a handshake as `me` speaking protocol `kind`; `dialed` is the
    /// address this side dialed (`None`: it accepted the connection); `nonce`
    /// must be fresh and random.
    pub fn new(
        me: Addr,
        identity: Identity,
        kind: u8,
        dialed: Option<Addr>,
        nonce: [u8; 32],
    ) -> Self {
        let mine = Hello {
            addr: me,
            nonce,
            identity: identity.public(),
            kind,
        };
        let my_frame = codec::encode_frame(KIND_HELLO, &mine);
        Handshake {
            me,
            identity,
            kind,
            dialed,
            my_frame,
        }
    }

    /// The hello frame to send first.
    pub fn hello_frame(&self) -> &[u8] {
        &self.my_frame
    }

    /// Check the peer's hello `frame` (header included, at most
    /// [`HANDSHAKE_MAX`] bytes of payload): `known` gives the key this endpoint
    /// knows for an address; an unknown `Addr::Client` below
    /// [`ClientId::REPLICA_BASE`] is admitted with the key it presents only if
    /// `accept_clients` and its id is [`ClientId::of_key`] of that key (a
    /// replica's client id must be known). Returns the state waiting for the
    /// peer's signature and the auth frame to send.
    pub fn on_hello(
        self,
        frame: &[u8],
        known: impl FnOnce(Addr) -> Option<PublicIdentity>,
        accept_clients: bool,
    ) -> Result<(AwaitAuth, Vec<u8>), Fault> {
        let theirs: Hello = handshake_frame(frame, KIND_HELLO, "hello")?;
        if theirs.kind != self.kind {
            return Err(fault(
                "handshake",
                format!(
                    "peer speaks protocol kind {} but this node speaks {}",
                    theirs.kind, self.kind
                ),
            ));
        }
        if theirs.addr == self.me {
            return Err(fault("impostor", "peer claims this node's own address"));
        }
        let (peer_pk, new_client) = self.admit(&theirs, known, accept_clients)?;
        let peer = theirs.addr;
        let dialer = self.dialed.is_some();
        let mut transcript = DOMAIN.to_vec();
        if dialer {
            transcript.extend_from_slice(&self.my_frame);
            transcript.extend_from_slice(frame);
        } else {
            transcript.extend_from_slice(frame);
            transcript.extend_from_slice(&self.my_frame);
        }
        // Transport security never uses the modeled crypto mode.
        let mut crypto = Crypto::new(self.me, self.identity, CryptoMode::Real);
        crypto
            .add_peer(peer, peer_pk)
            .map_err(|e| fault("handshake", e.to_string()))?;
        let my_role = if dialer { b'D' } else { b'A' };
        let sig = crypto.sign(&signed(my_role, &transcript));
        let auth = codec::encode_frame(KIND_AUTH, &Auth { sig });
        let next = AwaitAuth {
            crypto,
            peer,
            transcript,
            dialer,
            new_client,
        };
        Ok((next, auth))
    }

    /// The key to check the peer's signature with, and whether it is a client
    /// key learnt from this hello.
    fn admit(
        &self,
        theirs: &Hello,
        known: impl FnOnce(Addr) -> Option<PublicIdentity>,
        accept_clients: bool,
    ) -> Result<(PublicIdentity, Option<PublicIdentity>), Fault> {
        if let Some(expect) = self.dialed {
            if theirs.addr != expect {
                return Err(fault(
                    "impostor",
                    format!("dialed {expect} but the peer claims to be {}", theirs.addr),
                ));
            }
            return match known(expect) {
                Some(pk) => Ok((pk, None)),
                None => Err(fault("handshake", format!("no key for {expect}"))),
            };
        }
        match known(theirs.addr) {
            Some(pk) if pk == theirs.identity => Ok((pk, None)),
            Some(_) => Err(fault(
                "impostor",
                format!(
                    "{} presented a key that differs from the known one",
                    theirs.addr
                ),
            )),
            None => match theirs.addr {
                Addr::Client(c) if accept_clients && !c.is_replica() => {
                    if c != ClientId::of_key(&theirs.identity) {
                        return Err(fault(
                            "impostor",
                            format!("{c}: client id does not match its key"),
                        ));
                    }
                    Ok((theirs.identity, Some(theirs.identity)))
                }
                _ => Err(fault(
                    "unknown_peer",
                    format!("{} is not in this node's configuration", theirs.addr),
                )),
            },
        }
    }
}

impl AwaitAuth {
    /// The peer this handshake is with (as its hello claims; not yet proven).
    pub fn peer(&self) -> Addr {
        self.peer
    }

    /// Check the peer's auth `frame`: its signature over the transcript must
    /// verify with the key admitted from its hello.
    pub fn on_auth(self, frame: &[u8]) -> Result<SessionKeys, Fault> {
        let auth: Auth = handshake_frame(frame, KIND_AUTH, "signature")?;
        let their_role = if self.dialer { b'A' } else { b'D' };
        let peer = self.peer;
        if self
            .crypto
            .verify(peer, &signed(their_role, &self.transcript), &auth.sig)
            .is_err()
        {
            return Err(fault(
                "impostor",
                format!("handshake signature of {peer} does not verify"),
            ));
        }
        let mut label = SESSION_LABEL.to_vec();
        label.extend_from_slice(&self.transcript);
        let key = self
            .crypto
            .mac(peer, &label)
            .map_err(|e| fault("handshake", e.to_string()))?
            .0;
        Ok(SessionKeys {
            peer,
            key,
            dialer: self.dialer,
            new_client: self.new_client,
        })
    }
}

/// The payloads of one authenticated frame (`frame`: header and payload, the
/// tag already checked and cut off) on a connection of protocol `kind`: a
/// plain frame's payload, or each inner frame's payload of a sealed frame, in
/// order, each checked (kind, `max`, bounds) as a plain frame is. Iteration
/// ends at the first fault.
pub fn payloads(frame: &[u8], kind: u8, max: usize) -> Payloads<'_> {
    Payloads {
        rest: Some(frame),
        kind,
        max,
        sealed: false,
    }
}

/// Iterator of [`payloads`].
pub struct Payloads<'a> {
    /// Unread bytes; `None` once done or after a fault.
    rest: Option<&'a [u8]>,
    kind: u8,
    max: usize,
    /// Inside a sealed frame (its header consumed).
    sealed: bool,
}

impl<'a> Payloads<'a> {
    fn step(&mut self, rest: &'a [u8]) -> Result<Option<&'a [u8]>, Fault> {
        let (got, len) = codec::parse_header(rest, self.max).map_err(codec_fault)?;
        if !self.sealed && got == KIND_SEALED {
            let body = &rest[HEADER_LEN..];
            if body.len() != len {
                return Err(fault("malformed_frame", "sealed frame length mismatch"));
            }
            self.sealed = true;
            if body.is_empty() {
                return Ok(None);
            }
            return self.step(body);
        }
        if got != self.kind {
            let what = if self.sealed { "sealed kind" } else { "kind" };
            return Err(fault(
                "unexpected_kind",
                format!("{what} {got:#x}, expected {:#x}", self.kind),
            ));
        }
        let end = HEADER_LEN + len;
        if rest.len() < end || (!self.sealed && rest.len() != end) {
            return Err(fault("malformed_message", "frame cut short or overlong"));
        }
        let after = &rest[end..];
        self.rest = (self.sealed && !after.is_empty()).then_some(after);
        Ok(Some(&rest[HEADER_LEN..end]))
    }
}

impl<'a> Iterator for Payloads<'a> {
    type Item = Result<&'a [u8], Fault>;
    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest.take()?;
        self.step(rest).transpose()
    }
}

/// The handshake message of frame kind `want` in `frame` (`what` names it in
/// the fault).
fn handshake_frame<T: DeserializeOwned>(frame: &[u8], want: u8, what: &str) -> Result<T, Fault> {
    let (kind, _) = codec::parse_header(frame, HANDSHAKE_MAX).map_err(codec_fault)?;
    if kind != want {
        return Err(fault(
            "handshake",
            format!("expected {what}, got frame kind {kind:#x}"),
        ));
    }
    codec::decode_frame(frame, want, HANDSHAKE_MAX).map_err(codec_fault)
}

/// Decode one message payload of at most `max` bytes (the transport's
/// `max_frame`), as the reader does before handing it to the protocol.
pub fn decode_message<M: DeserializeOwned>(payload: &[u8], max: usize) -> Result<M, Fault> {
    codec::from_bytes(payload, max).map_err(|e| fault("malformed_message", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::{ClientId, NodeId};

    fn ident(i: u8) -> Identity {
        Identity::from_seed([i; 32])
    }

    /// Node 0 accepts, `dialer` dials it; the hellos and auths cross.
    fn run(
        dialer: Addr,
        dialer_id: Identity,
        node0_knows: Option<PublicIdentity>,
        clients: bool,
    ) -> Result<(SessionKeys, SessionKeys), Fault> {
        let n0 = Addr::Node(NodeId(0));
        let d = Handshake::new(dialer, dialer_id, 3, Some(n0), [1; 32]);
        let a = Handshake::new(n0, ident(0), 3, None, [2; 32]);
        let (dh, ah) = (d.hello_frame().to_vec(), a.hello_frame().to_vec());
        let (a_wait, a_auth) = a.on_hello(&dh, |_| node0_knows, clients)?;
        let (d_wait, d_auth) = d.on_hello(&ah, |_| Some(ident(0).public()), false)?;
        Ok((d_wait.on_auth(&a_auth)?, a_wait.on_auth(&d_auth)?))
    }

    #[test]
    fn handshake_agrees_on_a_key_and_admits_clients_only_if_asked() {
        let n1 = Addr::Node(NodeId(1));
        let (d, a) = run(n1, ident(1), Some(ident(1).public()), false).unwrap();
        assert_eq!((d.peer, a.peer), (Addr::Node(NodeId(0)), n1));
        assert_eq!(d.key, a.key);
        assert!(d.dialer && !a.dialer && a.new_client.is_none());

        let c = Addr::Client(ClientId::of_key(&ident(7).public()));
        let (_, a) = run(c, ident(7), None, true).unwrap();
        assert_eq!(a.new_client, Some(ident(7).public()));
        assert_eq!(
            run(c, ident(7), None, false).err().unwrap().kind,
            "unknown_peer"
        );
        // a known node presenting another key
        let e = run(n1, ident(9), Some(ident(1).public()), false)
            .err()
            .unwrap();
        assert_eq!(e.kind, "impostor");
    }

    #[test]
    fn an_unknown_client_is_admitted_only_under_the_id_of_its_key() {
        let own = ClientId::of_key(&ident(7).public());
        let other = ClientId::of_key(&ident(8).public());
        // an id that is not its key's (another client's, or picked at will)
        for id in [other, ClientId(own.0 ^ 1), ClientId(7)] {
            let e = run(Addr::Client(id), ident(7), None, true).err().unwrap();
            assert_eq!(e.kind, "impostor", "{id}");
            assert!(e.detail.contains("client id does not match its key"), "{e}");
        }
        // a replica's client id is admitted only with the key the node knows
        let rc = Addr::Client(ClientId::for_replica(NodeId(1)));
        let e = run(rc, ident(1), None, true).err().unwrap();
        assert_eq!(e.kind, "unknown_peer");
        let (_, a) = run(rc, ident(1), Some(ident(1).public()), true).unwrap();
        assert_eq!((a.peer, a.new_client), (rc, None));
        let e = run(rc, ident(2), Some(ident(1).public()), true)
            .err()
            .unwrap();
        assert_eq!(e.kind, "impostor");
        // the matching id is admitted, with its key learnt
        let (_, a) = run(Addr::Client(own), ident(7), None, true).unwrap();
        assert_eq!(a.new_client, Some(ident(7).public()));
    }

    #[test]
    fn handshake_rejects_a_swapped_or_foreign_signature() {
        let n0 = Addr::Node(NodeId(0));
        let n1 = Addr::Node(NodeId(1));
        let d = Handshake::new(n1, ident(1), 3, Some(n0), [1; 32]);
        let a = Handshake::new(n0, ident(0), 3, None, [2; 32]);
        let dh = d.hello_frame().to_vec();
        let (a_wait, a_auth) = a.on_hello(&dh, |_| Some(ident(1).public()), false).unwrap();
        // the acceptor's own signature reflected back to it does not verify
        assert_eq!(a_wait.on_auth(&a_auth).err().unwrap().kind, "impostor");
        // a hello where an auth is due
        let a = Handshake::new(n0, ident(0), 3, None, [2; 32]);
        let (a_wait, _) = a.on_hello(&dh, |_| Some(ident(1).public()), false).unwrap();
        assert_eq!(a_wait.on_auth(&dh).err().unwrap().kind, "handshake");
    }

    fn sealed(inner: &[Vec<u8>]) -> Vec<u8> {
        let body = inner.concat();
        let mut f = codec::header(KIND_SEALED, body.len()).to_vec();
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn payloads_of_plain_and_sealed_frames() {
        let one = codec::encode_frame(3, &1u64);
        let got: Vec<_> = payloads(&one, 3, 100).collect();
        assert_eq!(got, vec![Ok(&one[HEADER_LEN..])]);
        let two = codec::encode_frame(3, &2u64);
        let s = sealed(&[one.clone(), two.clone()]);
        let got: Vec<u64> = payloads(&s, 3, 100)
            .map(|p| decode_message(p.unwrap(), 100).unwrap())
            .collect();
        assert_eq!(got, vec![1, 2]);
        assert_eq!(payloads(&sealed(&[]), 3, 100).count(), 0);
        // faults end the iteration after the good payloads before them
        let bad = sealed(&[one.clone(), codec::encode_frame(4, &2u64), two.clone()]);
        let got: Vec<_> = payloads(&bad, 3, 100)
            .map(|p| p.map_err(|f| f.kind))
            .collect();
        assert_eq!(got, vec![Ok(&one[HEADER_LEN..]), Err("unexpected_kind")]);
        let nested = sealed(std::slice::from_ref(&s));
        assert_eq!(
            payloads(&nested, 3, 1000).next().unwrap().unwrap_err().kind,
            "unexpected_kind"
        );
        let mut cut = two.clone();
        cut.pop();
        let short = sealed(&[one.clone(), cut.clone()]);
        let got: Vec<_> = payloads(&short, 3, 100).collect();
        assert_eq!(got[1].as_ref().unwrap_err().kind, "malformed_message");
        assert_eq!(
            payloads(&cut, 3, 100).next().unwrap().unwrap_err().kind,
            "malformed_message"
        );
        assert_eq!(
            payloads(&s, 3, 4).next().unwrap().unwrap_err().kind,
            "oversized_frame"
        );
    }
}
