//! Seeded field surgery for [`super::Mutator`]s: how a Byzantine node
//! corrupts the fields of an otherwise valid message — numbers that name
//! views, slots, sequence numbers, indices and range bounds; digests; the
//! length of a list; the bytes of an opaque payload. A protocol's mutator
//! picks the field, these pick the damage, all from the node's RNG (runs
//! replay from their seed).

use rand::{Rng, RngCore};

/// A number pushed to an edge: 0, 1, the maximum, one off, far ahead, or
/// anything.
pub fn number(v: u64, rng: &mut dyn RngCore) -> u64 {
    match rng.gen_range(0..7) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => v.wrapping_add(1),
        4 => v.wrapping_sub(1),
        5 => v.wrapping_add(rng.gen_range(2..1 << 20)),
        _ => rng.gen(),
    }
}

/// Two numbers that bound a range, swapped, collapsed or one of them moved.
pub fn range(from: &mut u64, to: &mut u64, rng: &mut dyn RngCore) {
    match rng.gen_range(0..3) {
        0 => std::mem::swap(from, to),
        1 => *to = *from,
        _ => {
            let pick = if rng.gen_bool(0.5) { from } else { to };
            *pick = number(*pick, rng);
        }
    }
}

/// A digest with one bit flipped, or random.
pub fn digest(d: &mut [u8; 32], rng: &mut dyn RngCore) {
    if rng.gen_bool(0.5) {
        d[rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8);
    } else {
        rng.fill_bytes(d);
    }
}

/// A list emptied, cut short, with an element repeated, or reversed.
pub fn list<T: Clone>(v: &mut Vec<T>, rng: &mut dyn RngCore) {
    if v.is_empty() {
        return;
    }
    match rng.gen_range(0..4) {
        0 => v.clear(),
        1 => v.truncate(rng.gen_range(0..v.len())),
        2 => {
            let i = rng.gen_range(0..v.len());
            let x = v[i].clone();
            v.insert(i, x);
        }
        _ => v.reverse(),
    }
}

/// Opaque bytes cut short, extended with junk, or with one byte changed.
pub fn bytes(v: &mut Vec<u8>, rng: &mut dyn RngCore) {
    match rng.gen_range(0..3) {
        0 => v.truncate(rng.gen_range(0..=v.len())),
        1 => v.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
        _ => {
            let i = rng.gen_range(0..v.len().max(1));
            match v.get_mut(i) {
                Some(b) => *b ^= rng.gen_range(1..=255u8),
                None => v.push(rng.gen()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_edit_changes_something_and_replays_from_the_seed() {
        let run = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut out = Vec::new();
            for _ in 0..200 {
                let (mut a, mut b) = (5u64, 9u64);
                range(&mut a, &mut b, &mut rng);
                let mut d = [7u8; 32];
                digest(&mut d, &mut rng);
                assert_ne!(d, [7u8; 32], "a digest left intact");
                let mut l = vec![1, 2, 3];
                list(&mut l, &mut rng);
                assert_ne!(l, vec![1, 2, 3], "a list left intact");
                out.push((number(10, &mut rng), a, b, d, l));
            }
            out
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
