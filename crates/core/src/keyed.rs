//! A keyed container of sub-instances of one protocol: the children a parent
//! protocol runs side by side (a ByzCast replica's SMR clients of its child
//! groups; next, DQBFT's N+1 ordering instances and Atum's vgroups).
//!
//! The parent keeps one [`Keyed`] per kind of child, runs a child's step with
//! [`Keyed::step`] (the child shares the parent's clock, RNG and, unless
//! [`Keyed::step_with`] names another identity, its crypto), and lifts the
//! resulting [`Step`] with the key in its mapping functions, e.g.
//!
//! ```ignore
//! if let Some(((), step)) = self.children.step(&y, cx, |c, icx| c.on_timer(t, icx)) {
//!     let done = step.lift(cx, Message::Smr, |t| Timer::Child(y, t));
//! }
//! ```
//!
//! Iteration is in key order (a `BTreeMap`), so nothing about the container
//! can make a run depend on hashing.

use crate::crypto::Crypto;
use crate::protocol::{Cx, Protocol, Step};
use std::collections::BTreeMap;

/// Instances of protocol `Q` by key `K`.
#[derive(Debug)]
pub struct Keyed<K: Ord, Q> {
    instances: BTreeMap<K, Q>,
}

impl<K: Ord, Q> Default for Keyed<K, Q> {
    fn default() -> Self {
        Keyed {
            instances: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, Q> FromIterator<(K, Q)> for Keyed<K, Q> {
    fn from_iter<I: IntoIterator<Item = (K, Q)>>(iter: I) -> Self {
        Keyed {
            instances: iter.into_iter().collect(),
        }
    }
}

impl<K: Ord + Clone, Q> Keyed<K, Q> {
    pub fn new() -> Self {
        Self::default()
    }
    /// Add (or replace) the instance at `key`; returns the old one.
    pub fn insert(&mut self, key: K, q: Q) -> Option<Q> {
        self.instances.insert(key, q)
    }
    pub fn remove(&mut self, key: &K) -> Option<Q> {
        self.instances.remove(key)
    }
    pub fn get(&self, key: &K) -> Option<&Q> {
        self.instances.get(key)
    }
    pub fn get_mut(&mut self, key: &K) -> Option<&mut Q> {
        self.instances.get_mut(key)
    }
    pub fn contains(&self, key: &K) -> bool {
        self.instances.contains_key(key)
    }
    pub fn len(&self) -> usize {
        self.instances.len()
    }
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.instances.keys()
    }
    /// Instances in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Q)> {
        self.instances.iter()
    }
}

impl<K: Ord + Clone, Q: Protocol> Keyed<K, Q> {
    /// Run `f` on the instance at `key` inside `cx` (see [`Cx::nested`]);
    /// `None` if there is no such instance.
    pub fn step<P: Protocol + ?Sized, R>(
        &mut self,
        key: &K,
        cx: &mut Cx<'_, P>,
        f: impl FnOnce(&mut Q, &mut Cx<'_, Q>) -> R,
    ) -> Option<(R, Step<Q>)> {
        let q = self.instances.get_mut(key)?;
        Some(cx.nested(|icx| f(q, icx)))
    }

    /// [`Keyed::step`] under another identity's `crypto` (see [`Cx::nested_with`]).
    pub fn step_with<P: Protocol + ?Sized, R>(
        &mut self,
        key: &K,
        crypto: &Crypto,
        cx: &mut Cx<'_, P>,
        f: impl FnOnce(&mut Q, &mut Cx<'_, Q>) -> R,
    ) -> Option<(R, Step<Q>)> {
        let q = self.instances.get_mut(key)?;
        Some(cx.nested_with(crypto, |icx| f(q, icx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{CryptoMode, Identity};
    use crate::protocol::{Effect, NoRecord};
    use crate::{Addr, NodeId};
    use rand::SeedableRng;

    /// Counts its inputs and echoes the count to node 0.
    #[derive(Default)]
    struct Counter(u32);
    impl Protocol for Counter {
        type Message = u32;
        type Input = ();
        type Output = u32;
        type Timer = ();
        type Record = NoRecord;
        fn on_input(&mut self, _: (), cx: &mut Cx<'_, Self>) {
            self.0 += 1;
            cx.send(Addr::Node(NodeId(0)), self.0);
            cx.set_timer((), 1);
            cx.output(self.0);
        }
        fn on_message(&mut self, _: Addr, _: u32, _: &mut Cx<'_, Self>) {}
        fn on_timer(&mut self, _: (), _: &mut Cx<'_, Self>) {}
    }

    struct Parent;
    impl Protocol for Parent {
        type Message = (char, u32);
        type Input = ();
        type Output = ();
        type Timer = char;
        type Record = NoRecord;
        fn on_input(&mut self, _: (), _: &mut Cx<'_, Self>) {}
        fn on_message(&mut self, _: Addr, _: (char, u32), _: &mut Cx<'_, Self>) {}
        fn on_timer(&mut self, _: char, _: &mut Cx<'_, Self>) {}
    }

    #[test]
    fn steps_reach_one_instance_and_lift_with_its_key() {
        let crypto = Crypto::new(
            Addr::Node(NodeId(0)),
            Identity::from_seed([2; 32]),
            CryptoMode::Real,
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut effects: Vec<Effect<Parent>> = Vec::new();
        let mut cx = Cx::new(0, &mut rng, &crypto, &mut effects);
        let mut kids: Keyed<char, Counter> = [('a', Counter::default()), ('b', Counter::default())]
            .into_iter()
            .collect();
        let mut outs = Vec::new();
        for k in ['a', 'b', 'a'] {
            let ((), step) = kids
                .step(&k, &mut cx, |c, icx| c.on_input((), icx))
                .unwrap();
            outs.extend(step.lift(&mut cx, |m| (k, m), |()| k));
        }
        assert!(kids
            .step(&'z', &mut cx, |c, icx| c.on_input((), icx))
            .is_none());
        assert_eq!(outs, vec![1, 1, 2]);
        assert_eq!(kids.get(&'a').unwrap().0, 2);
        assert!(matches!(effects[4], Effect::Send { msg: ('a', 2), .. }));
        assert!(matches!(effects[5], Effect::SetTimer { timer: 'a', .. }));
        assert_eq!(kids.keys().copied().collect::<Vec<_>>(), vec!['a', 'b']);
    }
}
