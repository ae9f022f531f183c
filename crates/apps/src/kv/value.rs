//! The typed values of the store (strings, hashes, lists, sets, sorted sets), their
//! byte bounds, and the typed access that gives Redis's `WRONGTYPE` error.
//!
//! Every collection keeps the count of its bytes (each element's bytes plus
//! [`ELEMENT_OVERHEAD`]) so that a write can be refused, before it changes anything,
//! when it would take the value past [`MAX_COLLECTION_BYTES`]. The bound also keeps
//! every whole-collection reply (`HGETALL`, `LRANGE`, `SMEMBERS`, `ZRANGE ...
//! WITHSCORES`) under the 16 MiB reply frame: a collection has at most 8 MiB / 32 =
//! 262,144 elements, and one element takes at most its bytes plus 36 in the reply's
//! encoding (a tag and a length per string, and a score of at most 24 characters), so
//! such a reply takes at most 9 MiB.
//!
//! In snapshots a collection is written as its elements in order (hash fields,
//! set and sorted-set members ascending; a score as its `f64` bits); decoding
//! accepts only what encoding writes (non-empty, within the bound, no NaN, no
//! `-0`), so snapshots stay canonical.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{KvReply, Model};

/// The most bytes one hash, list, set or sorted set may hold, counting
/// [`ELEMENT_OVERHEAD`] per element (Redis has no such limit short of `maxmemory`).
pub const MAX_COLLECTION_BYTES: usize = 8 << 20;
/// The bytes counted per element on top of its own (a hash field's value included).
pub const ELEMENT_OVERHEAD: usize = 32;
/// Redis's error for a command on a key of another type.
pub const ERR_WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// The error of a write that would take a collection past [`MAX_COLLECTION_BYTES`]
/// (worded like Redis's `maxmemory` refusal; nothing is changed).
pub fn err_too_large() -> KvReply {
    KvReply::Error(format!(
        "OOM command not allowed when the value would exceed {MAX_COLLECTION_BYTES} bytes (the per-key limit)"
    ))
}

/// The bytes counted for one element of `len` bytes.
pub fn cost(len: usize) -> usize {
    len.saturating_add(ELEMENT_OVERHEAD)
}

/// `bytes` if within the bound, else the error.
pub fn within(bytes: usize) -> Result<usize, KvReply> {
    if bytes > MAX_COLLECTION_BYTES {
        Err(err_too_large())
    } else {
        Ok(bytes)
    }
}

/// A key's value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Value {
    /// A string.
    Str(Vec<u8>),
    /// A hash: fields and their values.
    Hash(Hash),
    /// A list.
    List(List),
    /// A set.
    Set(Set),
    /// A sorted set.
    ZSet(ZSet),
}

impl Value {
    /// The name `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }

    /// Whether this is a collection without elements (Redis deletes those).
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::Hash(h) => h.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for Value {
    /// A string as a quoted bulk (`"v"`), a hash as `hash{"f": "v"}`, a list as
    /// `list["a"]`, a set as `set{"a"}`, a sorted set as `zset{"a": 1}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use super::Quoted;
        fn items<T>(
            f: &mut std::fmt::Formatter<'_>,
            open: &str,
            close: &str,
            it: impl Iterator<Item = T>,
            mut one: impl FnMut(&mut std::fmt::Formatter<'_>, T) -> std::fmt::Result,
        ) -> std::fmt::Result {
            f.write_str(open)?;
            for (i, x) in it.enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                one(f, x)?;
            }
            f.write_str(close)
        }
        match self {
            Value::Str(s) => Quoted(s).fmt(f),
            Value::Hash(h) => items(f, "hash{", "}", h.iter(), |f, (k, v)| {
                write!(f, "{}: {}", Quoted(k), Quoted(v))
            }),
            Value::List(l) => items(f, "list[", "]", l.items().iter(), |f, v| Quoted(v).fmt(f)),
            Value::Set(s) => items(f, "set{", "}", s.members().iter(), |f, v| Quoted(v).fmt(f)),
            Value::ZSet(z) => items(f, "zset{", "}", z.ordered().iter(), |f, (s, m)| {
                write!(f, "{}: {}", Quoted(m), super::float::format_g17(s.get()))
            }),
        }
    }
}

/// A type of value the typed accessors of [`Model`] hand out.
pub trait Kind: Default + Sized {
    /// The value as this type, if it is one.
    fn of(v: &Value) -> Option<&Self>;
    /// The value as this type, mutably, if it is one.
    fn of_mut(v: &mut Value) -> Option<&mut Self>;
    /// Into a value.
    fn wrap(self) -> Value;
}

macro_rules! kind {
    ($t:ty, $variant:ident) => {
        impl Kind for $t {
            fn of(v: &Value) -> Option<&Self> {
                match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn of_mut(v: &mut Value) -> Option<&mut Self> {
                match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn wrap(self) -> Value {
                Value::$variant(self)
            }
        }
    };
}
kind!(Vec<u8>, Str);
kind!(Hash, Hash);
kind!(List, List);
kind!(Set, Set);
kind!(ZSet, ZSet);

fn wrongtype() -> KvReply {
    KvReply::Error(ERR_WRONGTYPE.to_string())
}

impl Model {
    /// `key`'s value as a `T`: `None` if missing, `WRONGTYPE` if of another type.
    pub(crate) fn read_as<T: Kind>(&self, key: &[u8]) -> Result<Option<&T>, KvReply> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => T::of(v).map(Some).ok_or_else(wrongtype),
        }
    }

    /// As [`Model::read_as`], mutably.
    pub(crate) fn write_as<T: Kind>(&mut self, key: &[u8]) -> Result<Option<&mut T>, KvReply> {
        match self.map.get_mut(key) {
            None => Ok(None),
            Some(v) => T::of_mut(v).map(Some).ok_or_else(wrongtype),
        }
    }

    /// `key`'s value as a `T`, an empty one (without a TTL) created if missing;
    /// `WRONGTYPE` if of another type. A collection left empty by the command is
    /// deleted after it ([`Model::drop_empty`]).
    pub(crate) fn create_as<T: Kind>(&mut self, key: &[u8]) -> Result<&mut T, KvReply> {
        if !self.map.contains_key(key) {
            self.map.insert(key.to_vec(), T::default().wrap());
        }
        match self.map.get_mut(key) {
            Some(v) => T::of_mut(v).ok_or_else(wrongtype),
            None => Err(wrongtype()),
        }
    }

    /// Delete `key` if it holds an empty collection (as Redis never keeps one).
    pub(crate) fn drop_empty(&mut self, key: &[u8]) {
        if self.map.get(key).is_some_and(Value::is_empty_collection) {
            self.delete(key);
        }
    }
}

/// A hash's fields and values, with its byte count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

impl Hash {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// The counted bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// The value of `field`.
    pub fn get(&self, field: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(field)
    }
    /// Fields and values in field order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.map.iter()
    }
    /// The byte count after setting all `pairs` (later pairs win).
    pub fn bytes_after<'a>(&self, pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> usize {
        let pending: BTreeMap<&[u8], &[u8]> = pairs.into_iter().collect();
        pending
            .into_iter()
            .fold(self.bytes, |b, (f, v)| match self.map.get(f) {
                Some(old) => b - old.len() + v.len(),
                None => b.saturating_add(cost(f.len()).saturating_add(v.len())),
            })
    }
    /// Set `field` (the caller checked the bound); whether it is new.
    pub fn insert(&mut self, field: Vec<u8>, value: Vec<u8>) -> bool {
        let add = value.len();
        match self.map.insert(field.clone(), value) {
            Some(old) => {
                self.bytes = self.bytes - old.len() + add;
                false
            }
            None => {
                self.bytes += cost(field.len()) + add;
                true
            }
        }
    }
    /// Remove `field`; whether it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self.map.remove(field) {
            Some(old) => {
                self.bytes -= cost(field.len()) + old.len();
                true
            }
            None => false,
        }
    }
}

/// A list, with its byte count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct List {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl List {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// The counted bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// The elements, head first.
    pub fn items(&self) -> &VecDeque<Vec<u8>> {
        &self.items
    }
    /// Add at the head or the tail (the caller checked the bound).
    pub fn push(&mut self, head: bool, v: Vec<u8>) {
        self.bytes += cost(v.len());
        if head {
            self.items.push_front(v);
        } else {
            self.items.push_back(v);
        }
    }
    /// Insert at `index` (`<= len`; the caller checked the bound).
    pub fn insert(&mut self, index: usize, v: Vec<u8>) {
        self.bytes += cost(v.len());
        self.items.insert(index, v);
    }
    /// Take from the head or the tail.
    pub fn pop(&mut self, head: bool) -> Option<Vec<u8>> {
        let v = if head {
            self.items.pop_front()
        } else {
            self.items.pop_back()
        }?;
        self.bytes -= cost(v.len());
        Some(v)
    }
    /// Replace the element at `index` (in range; the caller checked the bound).
    pub fn set(&mut self, index: usize, v: Vec<u8>) {
        self.bytes = self.bytes - self.items[index].len() + v.len();
        self.items[index] = v;
    }
    /// Keep only the elements whose index `keep` accepts.
    pub fn retain_indexed(&mut self, mut keep: impl FnMut(usize, &[u8]) -> bool) {
        let mut i = 0;
        let mut bytes = self.bytes;
        self.items.retain(|v| {
            let k = keep(i, v);
            i += 1;
            if !k {
                bytes -= cost(v.len());
            }
            k
        });
        self.bytes = bytes;
    }
}

/// A set, with its byte count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Set {
    members: BTreeSet<Vec<u8>>,
    bytes: usize,
}

impl Set {
    /// A set of `members` if within the bound.
    pub fn from_members(members: BTreeSet<Vec<u8>>) -> Result<Set, KvReply> {
        let bytes = members
            .iter()
            .fold(0usize, |b, m| b.saturating_add(cost(m.len())));
        within(bytes)?;
        Ok(Set { members, bytes })
    }
    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }
    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
    /// The counted bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// The members in order.
    pub fn members(&self) -> &BTreeSet<Vec<u8>> {
        &self.members
    }
    /// Whether `m` is a member.
    pub fn contains(&self, m: &[u8]) -> bool {
        self.members.contains(m)
    }
    /// Add `m` (the caller checked the bound); whether it is new.
    pub fn insert(&mut self, m: Vec<u8>) -> bool {
        let len = m.len();
        let new = self.members.insert(m);
        if new {
            self.bytes += cost(len);
        }
        new
    }
    /// Remove `m`; whether it was there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        let gone = self.members.remove(m);
        if gone {
            self.bytes -= cost(m.len());
        }
        gone
    }
}

/// A sorted-set score: never NaN, and `-0` is kept as `0` (Redis keeps `-0` only
/// in its large-set encoding and answers `0` for small sets), so that the bitwise
/// order and equality are the numeric ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(f64);

impl Score {
    /// A score, `None` for NaN.
    pub fn new(x: f64) -> Option<Score> {
        if x.is_nan() {
            None
        } else {
            Some(Score(if x == 0.0 { 0.0 } else { x }))
        }
    }
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Score {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}
impl std::hash::Hash for Score {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.to_bits().hash(h);
    }
}

/// A sorted set: each member's score, and the (score, member) order, with its byte
/// count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZSet {
    scores: BTreeMap<Vec<u8>, Score>,
    order: BTreeSet<(Score, Vec<u8>)>,
    bytes: usize,
}

impl ZSet {
    /// Number of members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }
    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
    /// The counted bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// The score of `m`.
    pub fn score(&self, m: &[u8]) -> Option<Score> {
        self.scores.get(m).copied()
    }
    /// Members in (score, member) order.
    pub fn ordered(&self) -> &BTreeSet<(Score, Vec<u8>)> {
        &self.order
    }
    /// Set `m`'s score (the caller checked the bound for a new member); whether it
    /// is new.
    pub fn insert(&mut self, m: Vec<u8>, s: Score) -> bool {
        match self.scores.insert(m.clone(), s) {
            Some(old) => {
                self.order.remove(&(old, m.clone()));
                self.order.insert((s, m));
                false
            }
            None => {
                self.bytes += cost(m.len());
                self.order.insert((s, m));
                true
            }
        }
    }
    /// Remove `m`; whether it was there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self.scores.remove(m) {
            Some(old) => {
                self.order.remove(&(old, m.to_vec()));
                self.bytes -= cost(m.len());
                true
            }
            None => false,
        }
    }
}

// Snapshot encoding: the elements in order (see the module docs).

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.map.iter())
    }
}
impl Serialize for List {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.items.iter())
    }
}
impl Serialize for Set {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.members.iter())
    }
}
impl Serialize for ZSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.scores.iter().map(|(m, sc)| (m, sc.0.to_bits())))
    }
}

/// Decoding checks shared by the collections: non-empty, within the bound.
fn checked<E: serde::de::Error>(len: usize, bytes: usize) -> Result<usize, E> {
    if len == 0 {
        return Err(E::custom("empty collection"));
    }
    if bytes > MAX_COLLECTION_BYTES {
        return Err(E::custom("collection over the byte bound"));
    }
    Ok(bytes)
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::deserialize(d)?;
        let mut h = Hash::default();
        for (f, v) in pairs {
            h.insert(f, v);
        }
        h.bytes = checked(h.len(), h.bytes)?;
        Ok(h)
    }
}
impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items: Vec<Vec<u8>> = Vec::deserialize(d)?;
        let mut l = List::default();
        for v in items {
            l.push(false, v);
        }
        l.bytes = checked(l.len(), l.bytes)?;
        Ok(l)
    }
}
impl<'de> Deserialize<'de> for Set {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let members: Vec<Vec<u8>> = Vec::deserialize(d)?;
        let mut s = Set::default();
        for m in members {
            s.insert(m);
        }
        s.bytes = checked(s.len(), s.bytes)?;
        Ok(s)
    }
}
impl<'de> Deserialize<'de> for ZSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let members: Vec<(Vec<u8>, u64)> = Vec::deserialize(d)?;
        let mut z = ZSet::default();
        for (m, bits) in members {
            let s =
                Score::new(f64::from_bits(bits)).ok_or_else(|| D::Error::custom("NaN score"))?;
            z.insert(m, s);
        }
        z.bytes = checked(z.len(), z.bytes)?;
        Ok(z)
    }
}
